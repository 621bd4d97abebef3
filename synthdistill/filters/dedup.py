"""`dedup`: drop answers that repeat an earlier answer to the same prompt or anywhere."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.records import HarvestRecord

_SPACE = re.compile(r"\s+")


class DedupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = True
    near_threshold: float | None = Field(None, gt=0.0, le=1.0, description="MinHash Jaccard threshold; null = exact only")


def normalise(text: str) -> str:
    """Case-folded, NFKC, whitespace-collapsed text: what 'the same answer' means."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def dedup(records: list[HarvestRecord], params: DedupParams) -> list[str | None]:
    """Keep the first of each group of (near-)identical answers; the rest name what they repeat."""
    verdicts: list[str | None] = [None] * len(records)
    if params.exact:
        first_seen: dict[str, str] = {}
        for i, record in enumerate(records):
            digest = hashlib.sha256(normalise(record.text).encode()).hexdigest()
            if digest in first_seen:
                verdicts[i] = "exact-duplicate"
            else:
                first_seen[digest] = record.request_key
    if params.near_threshold is not None:
        from synthdistill.filters.near_duplicates import near_duplicate_verdicts

        for i, reason in enumerate(near_duplicate_verdicts(records, params.near_threshold, skip=verdicts)):
            if verdicts[i] is None and reason is not None:
                verdicts[i] = reason
    return verdicts
