"""`refusal`: drop answers in which the teacher declined instead of answering."""

from __future__ import annotations

import functools
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synthdistill.records import HarvestRecord

# Each phrase opens a refusal; they are searched for near the start of the answer only,
# because an answer may well *discuss* refusing later on ("I can't stress enough…" is not one).
_CANNOT = r"(?:can(?:no|')t|cannot|won'?t|will not|am unable to|'m unable to|am not able to)"
DEFAULT_PHRASES: dict[str, str] = {
    "sorry-cannot": r"\b(?:i'?m|i am) (?:so |very |really )?sorry,? (?:but )?(?:i|we) (?:can(?:no|')t|cannot|won'?t|am unable|'m unable|am not able)",
    "cannot-help": (
        rf"\bi {_CANNOT} (?:help|assist|comply|provide|fulfill|do that|answer|support|create|generate|write) "
        r"(?:you )?(?:with )?(?:that|this|the|your|such|any)\b"
    ),
    "as-an-ai": r"\bas an ai(?: language model| assistant| model)?,? i (?:can(?:no|')t|cannot|don'?t|do not|am not|'m not|am unable)",
    "unable-to-comply": r"\bi (?:must|have to) (?:respectfully )?(?:decline|refuse)\b",
    "against-guidelines": r"\b(?:goes|go|is|are) against (?:my|the|our) (?:guidelines|policies|policy|programming|principles)\b",
}


class RefusalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phrases: list[str] = Field(default_factory=list, description="Extra regexes (case-insensitive) that mark a refusal")
    defaults: bool = Field(True, description="Also use the built-in refusal phrases")
    within_chars: int = Field(300, ge=1, description="Look for the phrases in this many leading characters")

    @field_validator("phrases")
    @classmethod
    def _compiles(cls, phrases: list[str]) -> list[str]:
        for phrase in phrases:
            try:
                re.compile(phrase)
            except re.error as exc:
                raise ValueError(f"phrase /{phrase}/ is not a valid regex: {exc}") from None
        return phrases


@functools.lru_cache(maxsize=32)
def _patterns(extra: tuple[str, ...], defaults: bool) -> list[tuple[str, re.Pattern]]:
    named = list(DEFAULT_PHRASES.items()) if defaults else []
    named += [(phrase, phrase) for phrase in extra]
    return [(name, re.compile(pattern, re.IGNORECASE)) for name, pattern in named]


def refusal(records: list[HarvestRecord], params: RefusalParams) -> list[str | None]:
    """'refusal: <phrase name>' for answers that open with a refusal; the rest are kept."""
    patterns = _patterns(tuple(params.phrases), params.defaults)
    verdicts: list[str | None] = []
    for record in records:
        # Curly apostrophes are common in model output; the phrases are written with straight ones.
        opening = record.text[: params.within_chars].replace("\u2019", "'")
        hit = next((name for name, pattern in patterns if pattern.search(opening)), None)
        verdicts.append(f"refusal: {hit}" if hit else None)
    return verdicts
