"""arrow_lists: list columns built flat are the arrays `pa.array` builds from the same nested lists."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from synthdistill.arrow_lists import flat_list_type, list_column, table_from_rows

CASES = [
    (pa.list_(pa.uint32()), [[1, 2, 3], None, [], [4294967295]]),
    (pa.list_(pa.int32()), [[-100, -100, 7], [0]]),
    (pa.list_(pa.float32()), [[-0.125, -1.5], None, [-math.inf]]),
    (pa.list_(pa.string()), [["Hel", "lo", ""], None, ["é", "\u2581a"]]),
    (pa.list_(pa.list_(pa.uint16())), [[[1, 2], [3], []], None, [], [[65535]]]),
    (pa.list_(pa.list_(pa.string())), [[["a", "b"], ["c"]], None, [[]]]),
]


@pytest.mark.parametrize(("type_", "values"), CASES, ids=[str(t) for t, _ in CASES])
def test_a_column_equals_the_one_pa_array_builds(type_, values):
    built = list_column(values, type_)
    assert built.type == type_
    assert built.to_pylist() == pa.array(values, type=type_).to_pylist()
    assert built.null_count == sum(v is None for v in values)


def test_float16_leaves_round_like_numpy_from_the_python_float():
    values = [[[-0.0078125, -5.1, -7.77], [-2.3]], [[-math.inf, -65504.0]]]
    built = list_column(values, pa.list_(pa.list_(pa.float16())))
    flat = [x for row in built.to_pylist() for position in row for x in position]
    assert flat == [np.float16(x).item() for row in values for position in row for x in position]


def test_an_id_out_of_the_columns_range_raises_instead_of_wrapping():
    with pytest.raises(pa.ArrowInvalid, match="not in range"):
        list_column([[-1, 2]], pa.list_(pa.uint32()))
    with pytest.raises(pa.ArrowInvalid, match="not in range"):
        list_column([[[70000]]], pa.list_(pa.list_(pa.uint16())))


def test_a_table_builds_list_columns_flat_and_others_as_pa_array():
    schema = pa.schema([("name", pa.string()), ("ids", pa.list_(pa.int32())), ("meta", pa.struct([("a", pa.int8())]))])
    rows = [{"name": "x", "ids": [1, 2], "meta": {"a": 1}}, {"name": "y", "ids": None, "meta": None}]
    assert table_from_rows(rows, schema).equals(pa.Table.from_pylist(rows, schema=schema))
    assert [flat_list_type(f.type) for f in schema] == [False, True, False]
