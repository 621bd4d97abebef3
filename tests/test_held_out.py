"""The held-out prompts: a seeded choice by the sha256 of each prompt id, kept as ranks, not ids."""

from __future__ import annotations

import hashlib

import pytest

from synthdistill.held_out import HeldOut, prompt_rank


def _reference(prompt_ids: list[str], fraction: float, seed: int) -> set[str]:
    """The choice as first written: sort the distinct ids by the hex digest, take round(n * fraction)."""
    unique = sorted(set(prompt_ids), key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    if fraction <= 0 or len(unique) < 2:
        return set()
    return set(unique[: min(len(unique) - 1, max(1, round(len(unique) * fraction)))])


@pytest.mark.parametrize(("count", "fraction", "seed"), [(1000, 0.1, 0), (1000, 0.37, 7), (3, 0.01, 1), (2, 0.99, 0)])
def test_held_out_prompts_are_the_reference_choice(count, fraction, seed):
    ids = [f"{i * 2654435761 % 2**64:016x}" for i in range(count)] * 2  # every prompt answered twice
    held_out = HeldOut.of_prompts(ids, fraction, seed)
    expected = _reference(ids, fraction, seed)
    assert {p for p in ids if p in held_out} == expected
    assert held_out.count == len(expected) >= 1


def test_nothing_is_held_out_without_a_fraction_or_with_one_prompt():
    assert "a" not in HeldOut.of_prompts(["a", "b"], 0.0, 0) and HeldOut.of_prompts(["a", "b"], 0.0, 0).count == 0
    assert "a" not in HeldOut.of_prompts(["a", "a"], 0.5, 0)


def test_the_rank_orders_as_the_hex_digest():
    ids = [str(i) for i in range(200)]
    by_digest = sorted(ids, key=lambda p: hashlib.sha256(f"3:{p}".encode()).hexdigest())
    assert sorted(ids, key=lambda p: prompt_rank(p, 3)) == by_digest
