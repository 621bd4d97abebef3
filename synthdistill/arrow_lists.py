"""Arrow list columns built from Python lists, flat: the filter's and the build's Parquet writers.

`pa.array` on nested Python lists converts value by value; flattening with itertools and
converting the leaves once through numpy is several times faster for the token arrays (a
128-token top-20 record has 2,560 leaves per field), and the result is the same array. A row
may also come already flat (`FlatRows`: numpy arrays decoded from the ledger, never lists).
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple


class FlatRows(NamedTuple):
    """A row's list (or list of lists) already flat: a 1-D numpy array, and each inner list's length (2-D)."""

    values: Any
    lengths: list[int] | None


def list_column(values: list, type_):
    """A list<T> or list<list<T>> Arrow array of `type_`; each value None, Python lists or `FlatRows`."""
    import numpy as np
    import pyarrow as pa

    two_d = pa.types.is_list(type_.value_type)
    leaf_type = type_.value_type.value_type if two_d else type_.value_type
    outer: list[int] = []  # lists per row
    inner: list[int] = []  # leaves per inner list (2-D)
    pieces: list = []  # each row's leaves
    for value in values:
        if value is None:
            outer.append(0)
        elif isinstance(value, FlatRows):
            outer.append(len(value.lengths) if two_d else len(value.values))
            inner.extend(value.lengths or ())
            pieces.append(value.values)
        elif two_d:
            outer.append(len(value))
            inner.extend(map(len, value))
            pieces.append(list(itertools.chain.from_iterable(value)))
        else:
            outer.append(len(value))
            pieces.append(value)
    if pa.types.is_string(leaf_type):
        leaves = pa.array(list(itertools.chain.from_iterable(pieces)), leaf_type)
    else:
        wide = np.float64 if pa.types.is_floating(leaf_type) else np.int64
        flat = np.concatenate([np.asarray(p, dtype=wide) for p in pieces]) if pieces else np.zeros(0, wide)
        if pa.types.is_floating(leaf_type):  # float16 through numpy: Arrow cannot cast Python floats to it
            leaves = pa.array(flat.astype(leaf_type.to_pandas_dtype()), leaf_type)
        else:
            leaves = pa.array(flat).cast(leaf_type)  # a safe cast: an id out of range raises
    if two_d:
        leaves = pa.ListArray.from_arrays(_offsets(inner), leaves, type=type_.value_type)
    mask = pa.array([v is None for v in values], pa.bool_())
    return pa.ListArray.from_arrays(_offsets(outer), leaves, type=type_, mask=mask)


def _offsets(lengths: list[int]):
    import numpy as np
    import pyarrow as pa

    return pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]), pa.int32())


def flat_list_type(type_) -> bool:
    """Whether `list_column` builds this type: a list (or list of lists) of numbers or strings."""
    import pyarrow as pa

    def leaf(t) -> bool:
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t)

    if not pa.types.is_list(type_):
        return False
    inner = type_.value_type
    return leaf(inner) or (pa.types.is_list(inner) and leaf(inner.value_type))


def table_from_rows(rows: list[dict[str, Any]], schema):
    """`pa.Table.from_pylist(rows, schema)`, with the number and string list columns built flat."""
    import pyarrow as pa

    columns = {}
    for field in schema:
        values = [row.get(field.name) for row in rows]
        columns[field.name] = (
            list_column(values, field.type) if flat_list_type(field.type) else pa.array(values, type=field.type)
        )
    return pa.table(columns, schema=schema)
