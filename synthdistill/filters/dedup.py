"""`dedup`: drop answers that repeat an earlier answer, exactly (normalised) or nearly (MinHash LSH)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.records import HarvestRecord

_SPACE = re.compile(r"\s+")


class DedupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = True
    near_threshold: float | None = Field(None, gt=0.0, le=1.0, description="MinHash Jaccard threshold; null = exact only")
    scope: Literal["all", "prompt"] = Field(
        "all", description="all: an answer repeating any earlier answer goes; prompt: only repeats among one prompt's samples"
    )


def normalise(text: str) -> str:
    """Case-folded, NFKC, whitespace-collapsed text: what 'the same answer' means."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def dedup(records: list[HarvestRecord], params: DedupParams) -> list[str | None]:
    """Keep the first of each group of (near-)identical answers; the rest name the one they repeat."""
    verdicts: list[str | None] = [None] * len(records)
    if params.exact:
        first_seen: dict[tuple[str, str], str] = {}
        for i, record in enumerate(records):
            digest = hashlib.sha256(normalise(record.text).encode()).hexdigest()
            key = (record.prompt_id if params.scope == "prompt" else "", digest)
            if key in first_seen:
                verdicts[i] = f"exact-duplicate: of {first_seen[key]}"
            else:
                first_seen[key] = record.request_key
    if params.near_threshold is not None:
        from synthdistill.filters.near_duplicates import near_duplicate_verdicts

        near = near_duplicate_verdicts(records, params.near_threshold, skip=verdicts, same_prompt=params.scope == "prompt")
        for i, reason in enumerate(near):
            if verdicts[i] is None and reason is not None:
                verdicts[i] = reason
    return verdicts
