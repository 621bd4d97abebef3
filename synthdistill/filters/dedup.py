"""`dedup`: drop answers that repeat an earlier answer, exactly (normalised) or nearly (MinHash LSH over word 3-grams).

A thinking teacher's answer is compared with its trace: two samples that reach the same
"Answer: 42" by different reasoning are different training rows.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from typing import Any, Literal, NamedTuple

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
    return Deduplicator(params)(records)


class Deduplicator:
    """`dedup` over a stream of batches: called batch after batch, it gives the verdicts one call on all would.

    It keeps only what later answers are compared with: a 16-byte hash per distinct answer
    (exact) and, for near-duplicates, the LSH index and a uint32 MinHash signature per kept answer.
    """

    def __init__(self, params: DedupParams):
        self.params = params
        self.first_seen: dict[tuple[str, bytes], str] = {}
        self.near = NearDuplicates(params.near_threshold) if params.near_threshold is not None else None

    def __call__(
        self, records: list[HarvestRecord], computed: dict[str, Fingerprint] | None = None
    ) -> list[str | None]:
        """The batch's verdicts; `computed` (by request key) holds fingerprints made elsewhere (in a worker)."""
        computed = computed or {}
        prints = [computed.get(r.request_key) or fingerprint(r, self.params) for r in records]
        verdicts: list[str | None] = [None] * len(records)
        same_prompt = self.params.scope == "prompt"
        if self.params.exact:
            for i, record in enumerate(records):
                key = (record.prompt_id if same_prompt else "", prints[i].digest)
                if key in self.first_seen:
                    verdicts[i] = f"exact-duplicate: of {self.first_seen[key]}"
                else:
                    self.first_seen[key] = record.request_key
        if self.near is not None:
            near = self.near.verdicts(records, skip=verdicts, same_prompt=same_prompt, prints=prints)
            for i, reason in enumerate(near):
                if verdicts[i] is None and reason is not None:
                    verdicts[i] = reason
        return verdicts


class Fingerprint(NamedTuple):
    """What dedup compares of an answer: its normalised text's hash and (near-duplicates) its MinHash values."""

    digest: bytes
    minhash: Any  # numpy uint32 array, or None without near-duplicate detection


def fingerprint(record: HarvestRecord, params: DedupParams) -> Fingerprint:
    """A record's fingerprint: pure, so the filter stage makes them in its worker processes."""
    text = written(record)
    digest = hashlib.sha256(normalise(text).encode()).digest()[:16] if params.exact else b""
    if params.near_threshold is None:
        return Fingerprint(digest, None)
    from datasketch import MinHash

    signature = MinHash(num_perm=NUM_PERM, seed=SEED, permutations=_permutations(NUM_PERM), scheme=SCHEME)
    signature.update_batch(list(shingles(text)))
    return Fingerprint(digest, signature.hashvalues)


def fingerprints(records: list[HarvestRecord], params: DedupParams) -> dict[str, Fingerprint]:
    """Each record's fingerprint by request key (`RegisteredFilter.stream_inputs`)."""
    return {record.request_key: fingerprint(record, params) for record in records}


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
    params = DedupParams(exact=False, near_threshold=threshold)
    return NearDuplicates(threshold).verdicts(records, skip, same_prompt, [fingerprint(r, params) for r in records])


class NearDuplicates:
    """The MinHash LSH index of the answers kept so far; `verdicts` checks a batch against it and adds its keepers."""

    def __init__(self, threshold: float):
        from datasketch import MinHashLSH

        self.threshold = threshold
        self.lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        # LSH buckets only propose candidates; the signatures confirm them. Per kept answer: (signature, key, prompt)
        self.kept: dict[int, tuple[object, str, str]] = {}
        self.count = 0

    def verdicts(
        self, records: list[HarvestRecord], skip: list[str | None], same_prompt: bool, prints: list[Fingerprint]
    ) -> list[str | None]:
        from datasketch import MinHash

        permutations = _permutations(NUM_PERM)
        verdicts: list[str | None] = [None] * len(records)
        for i, record in enumerate(records):
            index, self.count = self.count, self.count + 1
            if skip[i] is not None:
                continue
            values = prints[i].minhash  # affine32: uint32
            signature = MinHash(
                num_perm=NUM_PERM, seed=SEED, permutations=permutations, scheme=SCHEME, hashvalues=values
            )
            hits = [
                j
                for j in map(int, self.lsh.query(signature))
                if (not same_prompt or self.kept[j][2] == record.prompt_id)
                and (self.kept[j][0] == values).mean() >= self.threshold
            ]
            if hits:
                verdicts[i] = f"near-duplicate: like {self.kept[min(hits)][1]}"
            else:
                self.lsh.insert(str(index), signature)
                self.kept[index] = (values, record.request_key, record.prompt_id if same_prompt else "")
        return verdicts
