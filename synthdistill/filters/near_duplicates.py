"""Near-duplicate detection with MinHash LSH (datasketch) over word 3-gram shingles."""

from __future__ import annotations

import functools

from synthdistill.filters.dedup import normalise
from synthdistill.records import HarvestRecord

NUM_PERM = 64
SEED = 1  # datasketch's default: signatures are comparable across runs
SCHEME = "affine32"  # datasketch >= 2.0's default, named because shared permutations require it


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
        signature.update_batch(list(shingles(record.text)))
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
