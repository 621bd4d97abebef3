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

    It keeps only what later answers are compared with (synthdistill/filters/dedup_index.py): a
    16-byte digest per distinct answer (exact) and, for near-duplicates, the LSH bands and the
    uint32 MinHash signature of each kept answer, with the request keys the verdicts name.
    """

    def __init__(self, params: DedupParams):
        from synthdistill.filters.dedup_index import ExactIndex  # numpy: not at import (the CLI's fast paths)

        self.params = params
        self.exact = ExactIndex() if params.exact else None
        self.near = NearDuplicates(params.near_threshold) if params.near_threshold is not None else None

    def __call__(
        self, records: list[HarvestRecord], computed: dict[str, Fingerprint] | None = None
    ) -> list[str | None]:
        """The batch's verdicts; `computed` (by request key) holds fingerprints made elsewhere (in a worker)."""
        computed = computed or {}
        prints = [computed.get(r.request_key) or fingerprint(r, self.params) for r in records]
        verdicts: list[str | None] = [None] * len(records)
        if self.exact is not None:
            for i, record in enumerate(records):
                first = self.exact.first(prints[i].digest)
                if first is not None:
                    verdicts[i] = f"exact-duplicate: of {first}"
                else:
                    self.exact.add(prints[i].digest, record.request_key)
        if self.near is not None:
            near = self.near.verdicts(records, skip=verdicts, same_prompt=self.params.scope == "prompt", prints=prints)
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
    # with scope "prompt" the prompt is part of what is hashed: equal answers to two prompts differ
    scope = f"{record.prompt_id}\0" if params.scope == "prompt" else ""
    digest = hashlib.sha256((scope + normalise(text)).encode()).digest()[:16] if params.exact else b""
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


class NearDuplicates:
    """The MinHash LSH index of the answers kept so far; `verdicts` checks a batch against it and adds its keepers."""

    def __init__(self, threshold: float):
        from datasketch import MinHashLSH

        from synthdistill.filters.dedup_index import BandIndex

        self.threshold = threshold
        # datasketch chooses the bands (b) and rows per band (r) for the threshold; the index is ours
        chosen = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self.index = BandIndex(chosen.b, chosen.r, NUM_PERM)

    def verdicts(
        self, records: list[HarvestRecord], skip: list[str | None], same_prompt: bool, prints: list[Fingerprint]
    ) -> list[str | None]:
        verdicts: list[str | None] = [None] * len(records)
        index = self.index
        for i, record in enumerate(records):
            if skip[i] is not None:
                continue
            values = prints[i].minhash  # affine32: uint32
            bands = index.band_keys(values, f"{record.prompt_id}\0".encode() if same_prompt else b"")
            # LSH buckets only propose candidates; the signatures confirm them
            hits = [j for j in index.candidates(bands) if (index.signatures[j] == values).mean() >= self.threshold]
            if hits:
                verdicts[i] = f"near-duplicate: like {index.request_keys[min(hits)]}"
            else:
                index.add(bands, values, record.request_key)
        return verdicts
