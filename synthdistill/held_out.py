"""The prompts the datasets hold out for eval: a seeded, order-independent choice, made by prompt.

Each prompt gets a rank from `sha256(f"{seed}:{prompt_id}")`; the round(n * eval_fraction)
distinct prompts of lowest rank (at least one, never all) are held out. Only the ranks are
kept (8 bytes a record while surveying, one number after), so a million prompts cost ~8 MB.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def prompt_rank(prompt_id: str, seed: int) -> int:
    """The first 64 bits of sha256(f"{seed}:{prompt_id}"): ordering by it orders by the hex digest."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()[:8], "big")


class HeldOut:
    """Which prompts are held out: those whose rank is at most the `count`-th lowest rank of the distinct prompts."""

    def __init__(self, ranks: Iterable[int], eval_fraction: float, seed: int):
        import numpy as np  # not at import: the CLI's fast paths import this module's importers

        self.seed = seed
        unique = np.unique(np.asarray(ranks, dtype=np.uint64))
        self.count = (
            0
            if eval_fraction <= 0 or len(unique) < 2
            else min(len(unique) - 1, max(1, round(len(unique) * eval_fraction)))
        )
        self.cutoff = int(unique[self.count - 1]) if self.count else -1

    @classmethod
    def of_prompts(cls, prompt_ids: Iterable[str], eval_fraction: float, seed: int) -> HeldOut:
        return cls([prompt_rank(p, seed) for p in prompt_ids], eval_fraction, seed)

    def __contains__(self, prompt_id: str) -> bool:
        return self.count > 0 and prompt_rank(prompt_id, self.seed) <= self.cutoff
