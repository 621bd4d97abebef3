"""`dedup`: drop answers that repeat an earlier answer, exactly (normalised) or nearly (MinHash LSH over word 3-grams).

A thinking teacher's answer is compared with its trace: two samples that reach the same
"Answer: 42" by different reasoning are different training rows.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.records import HarvestRecord

_SPACE = re.compile(r"\s+")
# MinHash settings of near-duplicate detection (datasketch)
NUM_PERM = 64
SEED = 1  # datasketch's default: signatures are comparable across runs
SCHEME = "affine32"  # datasketch >= 2.0's default, named because shared permutations require it


class DedupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = Field(True, description="Drop answers equal to an earlier one (case-, space- and NFKC-folded)")
    near_threshold: float | None = Field(
        None, gt=0.0, le=1.0, description="MinHash Jaccard threshold; null = exact only"
    )
    scope: Literal["all", "prompt"] = Field(
        "all",
        description="all: an answer repeating any earlier answer goes; prompt: only repeats among one prompt's samples",
    )


def normalise(text: str) -> str:
    """Case-folded, NFKC, whitespace-collapsed text: what 'the same answer' means."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def written(record: HarvestRecord) -> str:
    """What the teacher wrote: its trace (if any), its answer and its tool calls (if any)."""
    text = record.text if record.reasoning is None else f"{record.reasoning}\n\n{record.text}"
    return f"{text}\n\n{record.calls_text}" if record.tool_calls else text


def dedup(records: list[HarvestRecord], params: DedupParams) -> list[str | None]:
    """Keep the first of each group of (near-)identical answers; the rest name the one they repeat."""
    verdicts: list[str | None] = [None] * len(records)
    if params.exact:
        first_seen: dict[tuple[str, str], str] = {}
        for i, record in enumerate(records):
            digest = hashlib.sha256(normalise(written(record)).encode()).hexdigest()
            key = (record.prompt_id if params.scope == "prompt" else "", digest)
            if key in first_seen:
                verdicts[i] = f"exact-duplicate: of {first_seen[key]}"
            else:
                first_seen[key] = record.request_key
    if params.near_threshold is not None:
        near = near_duplicate_verdicts(
            records, params.near_threshold, skip=verdicts, same_prompt=params.scope == "prompt"
        )
        for i, reason in enumerate(near):
            if verdicts[i] is None and reason is not None:
                verdicts[i] = reason
    return verdicts


def shingles(text: str, n: int = 3) -> set[bytes]:
    """Word n-grams of the normalised text (the whole text when it has fewer words)."""
    words = normalise(text).split(" ")
    if len(words) < n:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}


@functools.lru_cache(maxsize=4)
def _permutations(num_perm: int):
    from datasketch import MinHash

    # Drawing the permutations is most of MinHash()'s cost; share one draw across records.
    return MinHash(num_perm=num_perm, seed=SEED, scheme=SCHEME).permutations


def near_duplicate_verdicts(
    records: list[HarvestRecord], threshold: float, skip: list[str | None], same_prompt: bool = False
) -> list[str | None]:
    """'near-duplicate: like <request_key>' for each record within `threshold` (estimated Jaccard) of an earlier kept one."""
    from datasketch import MinHash, MinHashLSH

    permutations = _permutations(NUM_PERM)
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    verdicts: list[str | None] = [None] * len(records)
    kept_signatures: dict[int, object] = {}  # LSH buckets only propose candidates; the signatures confirm them
    for i, record in enumerate(records):
        if skip[i] is not None:
            continue
        signature = MinHash(num_perm=NUM_PERM, seed=SEED, permutations=permutations, scheme=SCHEME)
        signature.update_batch(list(shingles(written(record))))
        values = signature.hashvalues
        hits = [
            j
            for j in map(int, lsh.query(signature))
            if (not same_prompt or records[j].prompt_id == record.prompt_id)
            and (kept_signatures[j] == values).mean() >= threshold
        ]
        if hits:
            verdicts[i] = f"near-duplicate: like {records[min(hits)].request_key}"
        else:
            lsh.insert(str(i), signature)
            kept_signatures[i] = values
    return verdicts
