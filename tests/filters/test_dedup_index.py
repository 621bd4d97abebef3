"""dedup's compact index: the same verdicts as datasketch's MinHashLSH, in a fraction of its memory."""

from __future__ import annotations

import random
import tracemalloc

import numpy as np
from datasketch import MinHash, MinHashLSH

from synthdistill.filters import dedup_index
from synthdistill.filters.dedup import NUM_PERM, SCHEME, SEED, Deduplicator, DedupParams, dedup, shingles
from synthdistill.filters.dedup_index import BandIndex, ExactIndex, MultiMap, Rows, Strings
from tests.records_fixtures import make_record


def test_multimap_keeps_every_value_in_insertion_order_across_merges(monkeypatch):
    monkeypatch.setattr(dedup_index, "MERGE_AT", 4)
    values = MultiMap()
    expected: dict[int, list[int]] = {}
    for i in range(50):
        key = (i * 7919) % 13 + 2**63  # keys above int64's range: uint64 throughout
        values.add(key, i)
        expected.setdefault(key, []).append(i)
        assert values.get(key) == expected[key]
    assert len(values) == 50 and len(values.keys) == 48 and values.recent_count == 2  # 12 merges of 4
    assert {key: values.get(key) for key in expected} == expected
    assert values.get(5) == []


def test_multimap_tells_apart_keys_a_float64_cannot(monkeypatch):
    # 2**62 + 1 and 2**62 + 2 are one float64: a lookup by Python int would compare as float64 and mix them
    monkeypatch.setattr(dedup_index, "MERGE_AT", 2)
    values = MultiMap()
    for offset in range(6):
        values.add(2**62 + offset, offset)
    assert values.recent_count == 0 and len(values.keys) == 6
    assert [values.get(2**62 + offset) for offset in range(6)] == [[offset] for offset in range(6)]


def test_strings_and_rows_grow_and_give_back_what_was_stored():
    keys = Strings()
    assert [keys.append(f"key-{i}" * (i % 3)) for i in range(3000)] == list(range(3000))
    assert [keys[i] for i in (0, 1, 2, 2999)] == ["", "key-1", "key-2key-2", "key-2999key-2999"]
    rows = Rows(4)
    for i in range(9000):  # into a third block
        rows.append(np.full(4, i, dtype=np.uint32))
    assert rows.count == 9000 and len(rows.blocks) == 3
    assert [rows[i].tolist() for i in (0, 4095, 4096, 8999)] == [[i] * 4 for i in (0, 4095, 4096, 8999)]


def test_exact_index_confirms_the_whole_digest():
    index = ExactIndex()
    index.add(b"A" * 16, "first")
    assert index.first(b"A" * 16) == "first"
    assert index.first(b"A" * 8 + b"B" * 8) is None  # same 64-bit bucket key, different digest
    index.add(b"A" * 8 + b"B" * 8, "second")
    assert index.first(b"A" * 8 + b"B" * 8) == "second" and index.first(b"A" * 16) == "first"


def _texts(count: int) -> list[str]:
    """Answers of 30 words; every fifth repeats an earlier one with one to three words changed."""
    rng = random.Random(3)
    vocabulary = [f"w{i}" for i in range(400)]
    texts: list[str] = []
    for i in range(count):
        if i > 10 and i % 5 == 0:
            words = rng.choice(texts).split()
            for _ in range(rng.randint(1, 3)):
                words[rng.randrange(len(words))] = rng.choice(vocabulary)
        else:
            words = [rng.choice(vocabulary) for _ in range(30)]
        texts.append(" ".join(words))
    return texts


def _datasketch_verdicts(records, threshold: float) -> list[str | None]:
    """The reference: datasketch's own MinHashLSH, queried and filled answer by answer."""
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    kept: dict[int, tuple] = {}
    verdicts: list[str | None] = []
    for i, record in enumerate(records):
        signature = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)
        signature.update_batch(list(shingles(record.text)))
        hits = [j for j in lsh.query(signature) if (kept[j][0] == signature.hashvalues).mean() >= threshold]
        if hits:
            verdicts.append(f"near-duplicate: like {kept[min(hits)][1]}")
        else:
            lsh.insert(i, signature)
            kept[i] = (signature.hashvalues, record.request_key)
            verdicts.append(None)
    return verdicts


def test_near_duplicate_verdicts_are_datasketchs():
    records = [make_record(f"q{i}", text) for i, text in enumerate(_texts(400))]
    for threshold in (0.5, 0.8):
        ours = dedup(records, DedupParams(exact=False, near_threshold=threshold))
        assert ours == _datasketch_verdicts(records, threshold)
        assert sum(v is not None for v in ours) >= 10  # the edits are caught, so the comparison means something


def test_streamed_dedup_of_a_whole_batch_at_a_time_matches_one_call(monkeypatch):
    monkeypatch.setattr(dedup_index, "MERGE_AT", 16)  # many merges inside the run
    records = [make_record(f"q{i % 50}", text, sample_index=i // 50) for i, text in enumerate(_texts(300))]
    for scope in ("all", "prompt"):
        params = DedupParams(exact=True, near_threshold=0.7, scope=scope)
        whole = dedup(records, params)
        streamed = Deduplicator(params)
        assert [v for start in range(0, 300, 37) for v in streamed(records[start : start + 37])] == whole
    assert sum(v is not None for v in dedup(records, DedupParams(near_threshold=0.7))) > sum(
        v is not None for v in dedup(records, DedupParams(near_threshold=0.7, scope="prompt"))
    )


def test_the_index_holds_a_kept_answer_in_under_500_bytes():
    chosen = MinHashLSH(threshold=0.8, num_perm=NUM_PERM)
    rng = np.random.default_rng(0)
    signatures = rng.integers(0, 2**32, size=(20_000, NUM_PERM), dtype=np.uint32)
    tracemalloc.start()
    exact, near = ExactIndex(), BandIndex(chosen.b, chosen.r, NUM_PERM)
    for i, signature in enumerate(signatures):
        key = f"{i:032x}"
        exact.add(signature[:4].tobytes(), key)
        near.add(near.band_keys(signature, b""), signature, key)
    exact.by_key._merge()
    for bucket in near.buckets:
        bucket._merge()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # signature 256 B, 5 bands x 16 B, digest 16 B, two keys 2 x 40 B (datasketch's MinHashLSH: ~2.5 KB)
    assert held / len(signatures) < 500, held / len(signatures)
