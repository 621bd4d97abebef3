"""The compact memory of `dedup`: what a million answers leave behind is numbers in a few numpy arrays.

`dedup` must remember every distinct answer (exact) and every kept answer's MinHash bands and
signature (near-duplicates) until the last record. As Python dicts and sets (datasketch's
`MinHashLSH`) that costs ~2.5 KB per answer; here it is 16 bytes per band entry, 16 per
digest, 4 per signature value and the request key's bytes.
"""

from __future__ import annotations

import hashlib
from array import array

import numpy as np

MERGE_AT = 1 << 16  # entries collected in a dict before they are merged into the sorted arrays


class MultiMap:
    """uint64 → the int values stored under it, in insertion order.

    Log-structured: new entries go to a small dict, merged into one sorted pair of arrays
    (keys, values) when it reaches `MERGE_AT`, so memory is 16 bytes per entry and a lookup
    is a binary search plus a dict probe.
    """

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.uint64)
        self.values = np.empty(0, dtype=np.int64)
        self.recent: dict[int, list[int]] = {}
        self.recent_count = 0

    def __len__(self) -> int:
        return len(self.keys) + self.recent_count

    def get(self, key: int) -> list[int]:
        """Every value stored under `key`, oldest first."""
        # a numpy uint64, not the Python int: with an int numpy compares every key as float64 (O(n), inexact)
        wanted = np.uint64(key)
        start = int(np.searchsorted(self.keys, wanted, side="left"))
        end = int(np.searchsorted(self.keys, wanted, side="right"))
        return self.values[start:end].tolist() + self.recent.get(key, [])

    def add(self, key: int, value: int) -> None:
        self.recent.setdefault(key, []).append(value)
        self.recent_count += 1
        if self.recent_count >= MERGE_AT:
            self._merge()

    def _merge(self) -> None:
        pairs = [(key, value) for key, values in self.recent.items() for value in values]
        keys = np.concatenate([self.keys, np.array([k for k, _ in pairs], dtype=np.uint64)])
        values = np.concatenate([self.values, np.array([v for _, v in pairs], dtype=np.int64)])
        order = np.argsort(keys, kind="stable")  # stable: a key's values stay oldest first (values grow)
        self.keys, self.values = keys[order], values[order]
        self.recent, self.recent_count = {}, 0


class Strings:
    """An append-only list of short strings (request keys) in one bytes buffer and an offsets array."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ends = array("q")

    def __len__(self) -> int:
        return len(self.ends)

    def append(self, text: str) -> int:
        """Store `text`; its index."""
        self.data += text.encode()
        self.ends.append(len(self.data))
        return len(self.ends) - 1

    def __getitem__(self, index: int) -> str:
        start = self.ends[index - 1] if index else 0
        return self.data[start : self.ends[index]].decode()


class Rows:
    """A growing 2-D uint32 array (one MinHash signature per row), in blocks: nothing copied as it grows."""

    BLOCK = 4096

    def __init__(self, width: int) -> None:
        self.width = width
        self.blocks: list[np.ndarray] = []
        self.count = 0

    def append(self, row) -> int:
        if self.count == len(self.blocks) * self.BLOCK:
            self.blocks.append(np.empty((self.BLOCK, self.width), dtype=np.uint32))
        self.blocks[-1][self.count % self.BLOCK] = row
        self.count += 1
        return self.count - 1

    def __getitem__(self, index: int):
        return self.blocks[index // self.BLOCK][index % self.BLOCK]


def key_of(data: bytes) -> int:
    """A 64-bit key of some bytes (collisions only propose candidates; callers confirm them)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class ExactIndex:
    """The 16-byte digests seen so far, each with the request key of its first answer."""

    def __init__(self) -> None:
        self.by_key = MultiMap()
        self.digests = bytearray()
        self.request_keys = Strings()

    def first(self, digest: bytes) -> str | None:
        """The request key of the first answer with this digest, if any."""
        for i in self.by_key.get(int.from_bytes(digest[:8], "little")):
            if self.digests[16 * i : 16 * i + 16] == digest:
                return self.request_keys[i]
        return None

    def add(self, digest: bytes, request_key: str) -> None:
        index = self.request_keys.append(request_key)
        self.digests += digest
        self.by_key.add(int.from_bytes(digest[:8], "little"), index)


class BandIndex:
    """MinHash LSH over kept answers: `bands` buckets per answer (the same as datasketch's), signatures to confirm."""

    def __init__(self, bands: int, rows: int, width: int) -> None:
        self.ranges = [(i * rows, (i + 1) * rows) for i in range(bands)]
        self.buckets = [MultiMap() for _ in range(bands)]
        self.signatures = Rows(width)
        self.request_keys = Strings()

    def band_keys(self, signature, scope: bytes) -> list[int]:
        """The bucket key of each band (with `scope`, answers in other scopes never share a bucket)."""
        return [key_of(scope + signature[start:end].tobytes()) for start, end in self.ranges]

    def candidates(self, band_keys: list[int]) -> set[int]:
        return {index for bucket, key in zip(self.buckets, band_keys) for index in bucket.get(key)}

    def add(self, band_keys: list[int], signature, request_key: str) -> None:
        index = self.signatures.append(signature)
        self.request_keys.append(request_key)
        for bucket, key in zip(self.buckets, band_keys):
            bucket.add(key, index)
