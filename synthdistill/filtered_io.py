"""The filter's records on disk: `filtered/kept.parquet` and `filtered/dropped.parquet`.

One row per record, written a row group per batch (`RecordsWriter`), read a batch at a
time (`read_batches`), so neither side holds every record. Typed columns:

    request_key, prompt_id, pack          strings (readers that need only these never parse a record)
    filter, reason                        dropped.parquet only: the step that dropped it and its whole reason
    record                                the record's other fields as JSON
    tokens, top_tokens                    list<string>, list<list<string>> (dictionary-encoded)
    token_ids, top_ids                    list<uint32>, list<list<uint32>>
    token_logprobs                        list<float32>: the sampled tokens' logprobs (confidence filters, eval)
    top_logprobs                          list<list<float16>>: the KD dataset stores them as float16 too

Files are zstd-compressed. A temp file beside the target is renamed over it when the
writer closes, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthdistill.arrow_lists import FlatRows, table_from_rows
from synthdistill.errors import DamagedFileError
from synthdistill.records import DroppedRecord, HarvestRecord
from synthdistill.safe_write import check_target

ARRAY_FIELDS = ("tokens", "token_ids", "token_logprobs", "top_tokens", "top_ids", "top_logprobs")
KEY_FIELDS = ("request_key", "prompt_id", "pack")
DROP_FIELDS = ("filter", "reason")
COMPRESSION = "zstd"


def schema(dropped: bool = False):
    """The Arrow schema of kept.parquet (or, with `dropped`, dropped.parquet)."""
    import pyarrow as pa

    strings = [pa.field(name, pa.string()) for name in KEY_FIELDS + (DROP_FIELDS if dropped else ())]
    return pa.schema(
        [
            *strings,
            pa.field("record", pa.string()),
            pa.field("tokens", pa.list_(pa.string())),
            pa.field("token_ids", pa.list_(pa.uint32())),
            pa.field("token_logprobs", pa.list_(pa.float32())),
            pa.field("top_tokens", pa.list_(pa.list_(pa.string()))),
            pa.field("top_ids", pa.list_(pa.list_(pa.uint32()))),
            pa.field("top_logprobs", pa.list_(pa.list_(pa.float16()))),
        ]
    )


def _row(record: HarvestRecord, drop: DroppedRecord | None = None) -> dict[str, Any]:
    data = record.model_dump(mode="json", exclude=set(ARRAY_FIELDS))
    row = {name: data[name] for name in KEY_FIELDS}
    if drop is not None:
        row.update(filter=drop.filter, reason=drop.reason)
    flat = record.flat_arrays
    if flat is not None:  # as the ledger decoded them, never as Python lists
        row.update({name: None if flat[name] is None else FlatRows(*flat[name]) for name in ARRAY_FIELDS})
    else:
        row.update({name: getattr(record, name) for name in ARRAY_FIELDS})
    row["record"] = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return row


def to_table(items: list[HarvestRecord] | list[DroppedRecord], dropped: bool = False):
    """Records (or, with `dropped`, DroppedRecords) as one Arrow table of `schema(dropped)`."""
    rows = [_row(item.record, item) if dropped else _row(item) for item in items]
    return table_from_rows(rows, schema(dropped))


@dataclass
class BatchTables:
    """A batch encoded in a worker: the records that passed the per-record steps and those dropped so far."""

    survivors: Any  # Arrow table of `schema()`, a row per survivor, in order
    dropped: Any  # Arrow table of `schema(dropped=True)`

    @classmethod
    def encode(
        cls, survivors: list[HarvestRecord], dropped: list[DroppedRecord]
    ) -> tuple[BatchTables, list[HarvestRecord], list[DroppedRecord]]:
        """The tables, and the records without their token arrays: the bulk of what a worker would send back."""
        light_dropped = [DroppedRecord(filter=d.filter, reason=d.reason, record=light(d.record)) for d in dropped]
        return cls(to_table(survivors), to_table(dropped, dropped=True)), [light(r) for r in survivors], light_dropped

    def finish(
        self, survivors: list[HarvestRecord], kept: list[HarvestRecord], dropped: list[DroppedRecord]
    ) -> tuple[Any, Any]:
        """(kept, dropped) tables after steps that only dropped survivors (`dropped`: the streaming steps)."""
        import pyarrow as pa

        row = {id(record): i for i, record in enumerate(survivors)}
        kept_rows = [row.get(id(record)) for record in kept]
        dropped_rows = [row.get(id(item.record)) for item in dropped]
        if None in kept_rows or None in dropped_rows:
            # the records came back without their arrays (`light`): one a step made cannot be written
            raise RuntimeError("a streaming filter step replaced a record; only per-record steps may")
        later = self.survivors.take(pa.array(dropped_rows, pa.int64()))
        later = later.add_column(len(KEY_FIELDS), "filter", pa.array([d.filter for d in dropped], pa.string()))
        later = later.add_column(len(KEY_FIELDS) + 1, "reason", pa.array([d.reason for d in dropped], pa.string()))
        all_dropped = pa.concat_tables([self.dropped, later.cast(schema(dropped=True))]).combine_chunks()
        return self.survivors.take(pa.array(kept_rows, pa.int64())), all_dropped


def light(record: HarvestRecord) -> HarvestRecord:
    """A copy without the token arrays, for a process that only counts and compares records another encoded."""
    return record.model_copy(update=dict.fromkeys(ARRAY_FIELDS)).with_flat_arrays(None)


def from_rows(rows: list[dict[str, Any]]) -> list[HarvestRecord]:
    """HarvestRecords from rows of `schema` (as `Table.to_pylist` gives them)."""
    return [_record(row, {name: row[name] for name in ARRAY_FIELDS}) for row in rows]


def from_batch(batch) -> list[HarvestRecord]:
    """HarvestRecords from an Arrow record batch of `schema`; the arrays go through numpy (fast)."""
    arrays = {name: _nested(batch.column(name)) for name in ARRAY_FIELDS}
    keys = {name: batch.column(name).to_pylist() for name in (*KEY_FIELDS, "record")}
    typed = _typed_arrays(batch)
    return [
        _record({name: keys[name][i] for name in keys}, {name: arrays[name][i] for name in ARRAY_FIELDS}, typed)
        for i in range(batch.num_rows)
    ]


def from_batch_flat(batch) -> list[HarvestRecord]:
    """As `from_batch`, the token arrays left flat numpy arrays (`HarvestRecord.flat_arrays`): the build's read."""
    if not _typed_arrays(batch):
        return from_batch(batch)  # checked value by value, and refused if wrong
    keys = {name: batch.column(name).to_pylist() for name in (*KEY_FIELDS, "record")}
    arrays = {name: _flat(batch.column(name)) for name in ARRAY_FIELDS}
    return [
        _record({name: keys[name][i] for name in keys}, {}, typed=True).with_flat_arrays(
            {name: arrays[name][i] for name in ARRAY_FIELDS}
        )
        for i in range(batch.num_rows)
    ]


def _flat(column) -> list:
    """Each row of a list (or list-of-lists) column as (1-D numpy array, inner lengths or None), None where null."""
    import pyarrow as pa

    valid = column.is_valid().to_numpy(zero_copy_only=False).tolist()
    outer = column.offsets.to_numpy()
    outer = (outer - outer[0]).tolist()
    inner = column.flatten()
    if pa.types.is_list(inner.type):
        bounds = inner.offsets.to_numpy()
        bounds = bounds - bounds[0]
        leaves = inner.flatten().to_numpy(zero_copy_only=False)
        lengths = (bounds[1:] - bounds[:-1]).tolist()
        return [
            (leaves[bounds[a] : bounds[b]], lengths[a:b]) if ok else None
            for a, b, ok in zip(outer[:-1], outer[1:], valid)
        ]
    leaves = inner.to_numpy(zero_copy_only=False)
    return [(leaves[a:b], None) if ok else None for a, b, ok in zip(outer[:-1], outer[1:], valid)]


def _typed_arrays(batch) -> bool:
    """Whether the batch's array columns have `schema`'s types and no null inside a list (then they need no check)."""
    import pyarrow as pa

    expected = schema()
    for name in ARRAY_FIELDS:
        column = batch.column(name)
        if column.type != expected.field(name).type:
            return False
        inner = column.flatten()
        while True:
            if inner.null_count:
                return False
            if not pa.types.is_list(inner.type):
                break
            inner = inner.flatten()
    return True


def _record(row: dict[str, Any], arrays: dict[str, Any], typed: bool = False) -> HarvestRecord:
    """The record of a row; with `typed` arrays (Arrow's types already checked) only the other fields are validated."""
    data = json.loads(row["record"])
    data.update({name: row[name] for name in KEY_FIELDS})
    if not typed:
        return HarvestRecord.model_validate({**data, **arrays})
    # validating 2,560 numbers per field per record cost more than the rest of the read
    return HarvestRecord.model_validate(data).model_copy(update=arrays)


def _nested(column) -> list:
    """A list (or list-of-lists) column as Python lists, None where null; numbers through numpy (fast)."""
    import pyarrow as pa

    def plain(array) -> list:
        return array.to_pylist() if pa.types.is_string(array.type) else array.to_numpy(zero_copy_only=False).tolist()

    def split(values: list, offsets) -> list:
        bounds = (offsets - offsets[0]).tolist()
        return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    if column.null_count == len(column):
        return [None] * len(column)
    inner = column.flatten()
    if pa.types.is_list(inner.type):
        offsets = inner.offsets.to_numpy()
        widths = offsets[1:] - offsets[:-1]
        leaves = inner.flatten()
        if len(widths) and (widths == widths[0]).all() and widths[0] and not pa.types.is_string(leaves.type):
            # every position has k candidates (the usual case): one reshape instead of a slice each
            values = leaves.to_numpy(zero_copy_only=False).reshape(-1, int(widths[0])).tolist()
        else:
            values = split(plain(leaves), offsets)
    else:
        values = plain(inner)
    rows = split(values, column.offsets.to_numpy())
    valid = column.is_valid().to_numpy(zero_copy_only=False).tolist()
    return [row if ok else None for row, ok in zip(rows, valid)]


class RecordsWriter:
    """Appends batches of records to one Parquet file, a row group each; `close()` renames it into place."""

    def __init__(self, path: Path, dropped: bool = False, inside: Path | None = None):
        self.path = Path(path)
        self.dropped = dropped
        self.rows = 0
        check_target(self.path, inside)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(handle)
        self._tmp = Path(tmp)
        self._writer = None

    def write(self, items: list[HarvestRecord] | list[DroppedRecord]) -> None:
        self.write_table(to_table(items, self.dropped) if items else None)

    def write_table(self, table) -> None:
        """Append a table of this file's schema (a worker's `BatchTables`) as one row group; None: nothing."""
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, schema(self.dropped), compression=COMPRESSION)
        if table is not None and len(table):
            self._writer.write_table(table)
            self.rows += len(table)

    def close(self) -> None:
        self.write([])  # an empty file still has the schema
        self._writer.close()
        with self._tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> RecordsWriter:
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _open(path: Path, hint: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        raise DamagedFileError(f"not a complete Parquet file (truncated or edited); {hint}", file=path) from None


def read_batches(path: Path, hint: str, batch_size: int = 1000, columns: list[str] | None = None) -> Iterator[list]:
    """The rows of a filter output file, `batch_size` at a time: dicts with `columns`, else HarvestRecords."""
    parquet = _open(path, hint)
    try:
        for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
            yield batch.to_pylist() if columns is not None else from_batch(batch)
    except (OSError, ValueError) as exc:
        if isinstance(exc, DamagedFileError):
            raise
        raise DamagedFileError(f"not a complete Parquet file (truncated or edited); {hint}", file=path) from None


def row_count(path: Path, hint: str) -> int:
    return _open(path, hint).metadata.num_rows


def read_rows_at(path: Path, hint: str, indices: Iterable[int]) -> list[dict[str, Any]]:
    """Whole rows (dicts; `record` parsed and the arrays merged back in) at the given indices, in index order."""
    parquet = _open(path, hint)
    wanted = sorted(set(indices))
    found: list[dict[str, Any]] = []
    start = 0
    for group in range(parquet.metadata.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        inside = [i - start for i in wanted if start <= i < start + size]
        if inside:
            rows = parquet.read_row_group(group).take(inside).to_pylist()
            found += [_merged(row) for row in rows]
        start += size
    return found


def _merged(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the record's JSON shape: the `record` fields with the keys and arrays merged in."""
    data = json.loads(row.pop("record"))
    if row["top_logprobs"] is not None:  # float16 values come back as numpy scalars
        row["top_logprobs"] = [[float(lp) for lp in lps] for lps in row["top_logprobs"]]
    record = {**{name: row.pop(name) for name in KEY_FIELDS}, **data, **{name: row.pop(name) for name in ARRAY_FIELDS}}
    return {**row, "record": record}


def row_groups(path: Path, hint: str) -> int:
    """How many row groups (the filter's batches) a file has: the build's units of work."""
    return _open(path, hint).metadata.num_row_groups


def read_row_group(path: Path, hint: str, group: int, flat: bool = False) -> list[HarvestRecord]:
    """The records of one row group, in order; with `flat` their token arrays as numpy (`from_batch_flat`)."""
    try:
        table = _open(path, hint).read_row_group(group)
        read = from_batch_flat if flat else from_batch
        return [record for batch in table.to_batches() for record in read(batch)]
    except (OSError, ValueError) as exc:
        if isinstance(exc, DamagedFileError):
            raise
        raise DamagedFileError(f"not a complete Parquet file (truncated or edited); {hint}", file=path) from None


def light_batches(path: Path, hint: str) -> Iterator[list[HarvestRecord]]:
    """Every row's record without its token arrays, a row group at a time: what the build surveys first.

    A row group at a time, not `iter_batches`: over a 1M-row file it kept ~0.8 GB of decoded columns
    alive after 150k rows (measured with the logprob columns); read one by one, nothing stays.
    """
    parquet = _open(path, hint)
    for group in range(parquet.metadata.num_row_groups):
        batch = _read_group(parquet, path, group, [*KEY_FIELDS, "record"], hint)
        keys = {name: batch.column(name).to_pylist() for name in (*KEY_FIELDS, "record")}
        yield [_record({name: keys[name][i] for name in keys}, {}) for i in range(batch.num_rows)]


def any_logprobs(path: Path, hint: str) -> bool:
    """Whether any row has both token and top-k logprobs (row groups read until one does: usually the first)."""
    parquet = _open(path, hint)
    for group in range(parquet.metadata.num_row_groups):
        batch = _read_group(parquet, path, group, ["token_logprobs", "top_logprobs"], hint)
        token, top = batch.column("token_logprobs").is_valid(), batch.column("top_logprobs").is_valid()
        if any(a and b for a, b in zip(token.to_pylist(), top.to_pylist())):
            return True
    return False


def _read_group(parquet, path: Path, group: int, columns: list[str], hint: str):
    try:
        return parquet.read_row_group(group, columns=columns)
    except (OSError, ValueError):
        raise DamagedFileError(f"not a complete Parquet file (truncated or edited); {hint}", file=path) from None
