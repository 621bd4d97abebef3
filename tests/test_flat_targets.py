"""flat_targets: the build's numpy path gives the targets and KD rows the list path gives."""

from __future__ import annotations

import numpy as np

from synthdistill.alignment import exact_targets
from synthdistill.build import kd_row
from synthdistill.filtered_io import RecordsWriter, from_batch, from_batch_flat
from synthdistill.flat_targets import exact_flat_targets, target_rows
from synthdistill.records import with_array_lists
from tests.records_fixtures import make_record

EOS = 2


def _arrays(n: int, k: int, seed: int) -> dict:
    """n positions of top-k; at about half of them the sampled token is not among the top-k."""
    rng = np.random.default_rng(seed)
    top_ids = [rng.choice(np.arange(10, 200), size=k, replace=False).tolist() for _ in range(n)]
    token_ids = [row[0] if rng.random() < 0.5 else int(rng.integers(300, 400)) for row in top_ids]
    token_ids[-1] = EOS if seed % 2 else token_ids[-1]  # with and without the stop token at the end
    top_logprobs = [sorted((-rng.exponential(2.0, k)).tolist(), reverse=True) for _ in range(n)]
    return {
        "tokens": [f"t{t}" for t in token_ids],
        "token_ids": token_ids,
        "token_logprobs": (-rng.exponential(1.0, n)).tolist(),
        "top_tokens": [[f"t{t}" for t in row] for row in top_ids],
        "top_ids": top_ids,
        "top_logprobs": top_logprobs,
    }


def _flat(arrays: dict) -> dict:
    flat = {}
    for name, value in arrays.items():
        if name.startswith("top_"):
            flat[name] = (np.asarray([x for row in value for x in row]), [len(row) for row in value])
        else:
            flat[name] = (np.asarray(value), None)
    return flat


def test_flat_targets_equal_the_list_targets_position_by_position():
    for seed in range(6):
        arrays = _arrays(n=17, k=5, seed=seed)
        lists = exact_targets(arrays["token_ids"], arrays["token_logprobs"], arrays["top_ids"], arrays["top_logprobs"])
        flat = exact_flat_targets(_flat(arrays))
        lengths, ids, logprobs = target_rows(flat)
        expected = target_rows(lists)
        assert lengths == expected[0] and set(lengths) == {5, 6}
        assert ids.tolist() == expected[1]
        assert logprobs.tolist() == expected[2]
        assert flat.student_ids == lists.student_ids and flat.kept == lists.kept == 17


def test_ragged_top_lists_take_the_list_path():
    arrays = _arrays(n=4, k=3, seed=0)
    arrays["top_ids"][2] = arrays["top_ids"][2][:2]
    arrays["top_logprobs"][2] = arrays["top_logprobs"][2][:2]
    assert exact_flat_targets(_flat(arrays)) is None


def test_kd_rows_from_flat_and_list_targets_are_equal_and_cut_at_max_length():
    record = make_record("Q?", "A")
    for seed, max_length in ((1, 64), (2, 64), (3, 12)):
        arrays = _arrays(n=17, k=4, seed=seed)
        lists = exact_targets(arrays["token_ids"], arrays["token_logprobs"], arrays["top_ids"], arrays["top_logprobs"])
        rows = [
            kd_row(record, [5, 6, 7], targets, EOS, max_length)
            for targets in (lists, exact_flat_targets(_flat(arrays)))
        ]
        for row in rows:
            row["kd_ids"] = [np.asarray(row["kd_ids"].values).tolist(), row["kd_ids"].lengths]
            row["kd_logprobs"] = [np.asarray(row["kd_logprobs"].values).tolist(), row["kd_logprobs"].lengths]
        assert rows[0] == rows[1]
        assert len(rows[0]["input_ids"]) == min(max_length, 3 + 17 + (seed % 2 == 0))
        assert rows[0]["kd_mask"][:3] == [0, 0, 0] and sum(rows[0]["kd_ids"][1]) == len(rows[0]["kd_ids"][0])


def test_records_read_flat_are_the_records_read_as_lists(tmp_path):
    path = tmp_path / "kept.parquet"
    records = [make_record(f"Q{i}?", f"A{i}", logprobs=_arrays(n=6, k=3, seed=i)) for i in range(3)]
    records.append(make_record("No logprobs?", "None"))
    with RecordsWriter(path) as writer:
        writer.write(records)
    import pyarrow.parquet as pq

    batch = pq.read_table(path).to_batches()[0]
    flat = from_batch_flat(batch)
    assert all(r.flat_arrays is not None and r.token_ids is None for r in flat)
    assert [r.has_logprobs for r in flat] == [True, True, True, False]
    assert [with_array_lists(r) for r in flat] == from_batch(batch)


def test_kd_logprob_step_rounds_every_candidate_but_the_sampled_tokens_own():
    record = make_record("Q?", "A")
    arrays = _arrays(n=17, k=4, seed=2)
    targets = exact_flat_targets(_flat(arrays))
    exact = kd_row(record, [5, 6, 7], targets, EOS, 64)
    rounded = kd_row(record, [5, 6, 7], targets, EOS, 64, logprob_step=1 / 32)
    ids = np.asarray(exact["kd_ids"].values)
    before, after = np.asarray(exact["kd_logprobs"].values), np.asarray(rounded["kd_logprobs"].values)
    sampled = np.repeat(exact["input_ids"][3:], exact["kd_ids"].lengths[3:])  # each candidate's position's token
    own = ids == sampled
    assert own.sum() == 17  # one per position: in the top-4 or appended beside it
    assert after[own].tolist() == before[own].tolist()  # the sampled token's logprob as harvested
    assert (after[~own] * 32 == np.round(after[~own] * 32)).all()  # the rest on the 1/32-nat grid
    assert np.abs(after[~own] - before[~own]).max() <= 1 / 64
    assert (after[~own] != before[~own]).sum() == (~own).sum()  # harvested values are not on the grid already
    assert rounded["kd_ids"].values.tolist() == exact["kd_ids"].values.tolist()
