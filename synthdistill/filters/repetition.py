"""`repetition`: drop degenerate answers that loop over the same words."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.records import HarvestRecord

_WORD = re.compile(r"\w+|[^\w\s]")


class RepetitionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_repeated_ngram_fraction: float = Field(
        0.3, gt=0.0, le=1.0, description="Drop above this share of repeated n-grams"
    )
    ngram: int = Field(3, ge=1, description="Words per n-gram")
    min_ngrams: int = Field(10, ge=1, description="Answers with fewer n-grams are too short to judge and are kept")


def repeated_ngram_fraction(text: str, n: int) -> tuple[float, int]:
    """(share of the answer's word n-grams that repeat an earlier one, number of n-grams)."""
    words = _WORD.findall(text.casefold())
    total = len(words) - n + 1
    if total <= 0:
        return 0.0, 0
    distinct = len({tuple(words[i : i + n]) for i in range(total)})
    return (total - distinct) / total, total


def repetition(records: list[HarvestRecord], params: RepetitionParams) -> list[str | None]:
    """'repetitive: …' for answers whose repeated n-gram share exceeds the threshold."""
    verdicts: list[str | None] = []
    for record in records:
        fraction, total = repeated_ngram_fraction(record.text, params.ngram)
        if total >= params.min_ngrams and fraction > params.max_repeated_ngram_fraction:
            verdicts.append(
                f"repetitive: {fraction:.0%} of {params.ngram}-grams repeat "
                f"(max {params.max_repeated_ngram_fraction:.0%})"
            )
        else:
            verdicts.append(None)
    return verdicts
