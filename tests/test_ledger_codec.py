"""The ledger's typed binary logprobs: ids and strings round-trip exactly, logprobs within the stated precision."""

from __future__ import annotations

import numpy as np
import pytest

from synthdistill.ledger_codec import LOGPROB_FIELDS, TOP_LOGPROBS_BIT, decode, encode, join_record, split_record
from tests.ledger_fixtures import logprob_fields


def _round_trip(fields: dict) -> dict:
    return decode(encode(fields))


def _exact_but_logprobs(got: dict, want: dict) -> None:
    for name in LOGPROB_FIELDS:
        if "logprobs" not in name:
            assert got[name] == want.get(name), name


def test_ids_and_strings_round_trip_exactly_and_the_strings_cost_one_entry_per_distinct_id():
    fields = logprob_fields(64, 20)
    blob = encode(fields)
    got = decode(blob)
    _exact_but_logprobs(got, fields)
    distinct = {i for row in fields["top_ids"] for i in row} | set(fields["token_ids"])
    # ids fit uint16: 2 B per id, float32 sampled logprobs, float16 top logprobs, one string per distinct id
    assert len(blob) < 64 * (2 + 4) + 64 * 20 * (2 + 2) + 64 + len(distinct) * 12
    assert blob[1] == (1 << len(LOGPROB_FIELDS)) - 1  # every field present


def test_logprobs_keep_float32_for_the_sampled_token_and_float16_for_the_top_k():
    fields = logprob_fields(50, 20, seed=3)
    got = _round_trip(fields)
    as_f32 = np.asarray(fields["token_logprobs"], dtype=np.float32).astype(np.float64)
    assert got["token_logprobs"] == as_f32.tolist()
    want, have = np.asarray(fields["top_logprobs"]), np.asarray(got["top_logprobs"])
    assert np.all(np.abs(have - want) <= np.abs(want) * 2**-11)
    # a logprob a server computed in float32 comes back exactly
    exact = {**fields, "token_logprobs": as_f32.tolist()}
    assert _round_trip(exact)["token_logprobs"] == as_f32.tolist()


def test_top_logprobs_beyond_float16s_range_are_kept_in_float32():
    fields = logprob_fields(4, 3)
    fields["top_logprobs"][2][2] = -99999.5
    assert _round_trip(fields)["top_logprobs"][2][2] == -99999.5


def test_without_ids_the_strings_are_indexed_and_ragged_rows_keep_their_lengths():
    fields = logprob_fields(30, 5, ids=False)
    fields["top_tokens"] = [row[: i % 6] for i, row in enumerate(fields["top_tokens"])]
    fields["top_logprobs"] = [row[: i % 6] for i, row in enumerate(fields["top_logprobs"])]
    got = _round_trip(fields)
    _exact_but_logprobs(got, fields)
    assert [len(row) for row in got["top_logprobs"]] == [i % 6 for i in range(30)]
    assert got["token_ids"] is None and got["top_ids"] is None


def test_an_id_naming_two_strings_falls_back_to_indexed_strings():
    fields = logprob_fields(10, 3)
    fields["top_ids"][0][1] = fields["top_ids"][0][0]  # same id, (usually) another string
    fields["top_tokens"][0][1] = "something else"
    _exact_but_logprobs(_round_trip(fields), fields)


@pytest.mark.parametrize("ids", [[70000, 3, 2**32 - 1], [-1, 5, 9], [2**40, 0, 1]])
def test_ids_beyond_uint16_round_trip(ids):
    fields = {"tokens": ["a", "b", "c"], "token_ids": ids, "token_logprobs": [-0.5, -1.0, -2.0]}
    got = _round_trip(fields)
    assert (got["token_ids"], got["tokens"], got["top_ids"]) == (ids, ["a", "b", "c"], None)


def test_odd_strings_and_empty_answers_round_trip():
    odd = ["", "\x00", "\ud83d", "😀", "a" * 300, "\n\t"]
    fields = {
        "tokens": odd,
        "token_logprobs": [-1.0] * 6,
        "top_tokens": [[s] for s in odd],
        "top_logprobs": [[-1.0]] * 6,
    }
    _exact_but_logprobs(_round_trip(fields), fields)
    empty = {"tokens": [], "token_ids": [], "token_logprobs": [], "top_tokens": [], "top_ids": [], "top_logprobs": []}
    assert _round_trip(empty) == empty


def test_the_presence_byte_says_whether_top_logprobs_are_held():
    fields = logprob_fields(3, 2)
    assert encode(fields)[1] >= TOP_LOGPROBS_BIT
    assert encode({**fields, "top_logprobs": None})[1] < TOP_LOGPROBS_BIT
    assert encode({}) is None and encode(dict.fromkeys(LOGPROB_FIELDS)) is None


def test_a_record_splits_into_json_without_the_fields_and_joins_back():
    payload = {"request_key": "k", "text": "hi", **logprob_fields(5, 2), "decision": "allow"}
    rest, blob = split_record(payload)
    assert list(rest) == list(payload) and all(rest[name] is None for name in LOGPROB_FIELDS)
    joined = join_record(rest, blob)
    assert list(joined) == list(payload)
    _exact_but_logprobs(joined, payload)
    assert join_record(payload, None) is payload  # an old row: its JSON holds them


def test_an_unknown_version_is_refused():
    blob = bytearray(encode(logprob_fields(2, 2)))
    blob[0] = 9
    with pytest.raises(ValueError, match="version 9"):
        decode(bytes(blob))
    with pytest.raises(ValueError, match="damaged"):
        decode(encode(logprob_fields(2, 2))[:7])


@pytest.mark.parametrize("top_id", [49_151, 262_143, 3_000_000_000])
def test_strings_by_id_read_back_exactly_for_small_large_and_absurd_ids(top_id):
    """Ids up to a big vocabulary take the counting path, an id past any vocabulary the sorting one: same strings."""
    fields = logprob_fields(8, 3)
    fields["top_ids"][2][1] = top_id
    fields["top_tokens"][2][1] = f"tok{top_id}"
    got = _round_trip(fields)
    _exact_but_logprobs(got, fields)
    assert got["top_tokens"][2][1] == f"tok{top_id}"
