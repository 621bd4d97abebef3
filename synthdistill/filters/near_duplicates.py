"""Near-duplicate detection with MinHash LSH (datasketch) over word 3-gram shingles."""

from __future__ import annotations

from synthdistill.filters.dedup import normalise
from synthdistill.records import HarvestRecord

NUM_PERM = 64


def _shingles(text: str, n: int = 3) -> set[bytes]:
    words = normalise(text).split(" ")
    if len(words) < n:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}


def near_duplicate_verdicts(records: list[HarvestRecord], threshold: float, skip: list[str | None]) -> list[str | None]:
    """'near-duplicate' for each record whose MinHash collides with an earlier kept one."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    verdicts: list[str | None] = [None] * len(records)
    for i, record in enumerate(records):
        if skip[i] is not None:
            continue
        signature = MinHash(num_perm=NUM_PERM)
        signature.update_batch(list(_shingles(record.text)))
        if lsh.query(signature):
            verdicts[i] = "near-duplicate"
        else:
            lsh.insert(str(i), signature)
    return verdicts
