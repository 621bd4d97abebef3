"""filtered/*.parquet: records go in typed and come back equal (top-k logprobs at float16), batch by batch."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from synthdistill.errors import DamagedFileError
from synthdistill.filtered_io import (
    BatchTables,
    RecordsWriter,
    any_logprobs,
    light_batches,
    read_batches,
    read_row_group,
    read_rows_at,
    row_groups,
)
from synthdistill.records import DroppedRecord, ToolCall
from tests.records_fixtures import make_record

LOGPROBS = {
    "tokens": ["Hel", "lo", "!"],
    "token_ids": [9906, 385, 0],
    "token_logprobs": [-0.125, -1.5, -0.0078125],
    "top_tokens": [["Hel", "Hi"], ["lo"], ["!", ".", "?"]],  # ragged: as many candidates as the server sent
    "top_ids": [[9906, 13347], [385], [0, 13, 30]],
    "top_logprobs": [[-0.125, -2.3], [-1.5], [-0.0078125, -5.1, -7.77]],
}


def _records():
    plain = make_record("Say hi.", "Hi")
    with_logprobs = make_record("Say hello.", "Hello!", logprobs=LOGPROBS)
    call = {"id": "c1", "function": {"name": "f", "arguments": "{}"}}
    tools = make_record("Call f.", "").model_copy(update={"tool_calls": [ToolCall.model_validate(call)]})
    return [plain, with_logprobs, tools]


def test_records_round_trip_with_typed_columns_in_row_groups(tmp_path):
    path = tmp_path / "kept.parquet"
    records = _records()
    with RecordsWriter(path) as writer:
        writer.write(records[:2])
        writer.write(records[2:])
    schema = pq.read_schema(path)
    assert str(schema.field("token_ids").type) == "list<element: uint32>"
    assert str(schema.field("token_logprobs").type) == "list<element: float>"
    assert str(schema.field("top_logprobs").type) == "list<element: list<element: halffloat>>"
    assert row_groups(path, "hint") == 2
    back = [r for batch in read_batches(path, "hint", batch_size=2) for r in batch]
    assert [r.model_dump(exclude={"top_logprobs"}) for r in back] == [
        r.model_dump(exclude={"top_logprobs"}) for r in records
    ]
    assert back[0].top_logprobs is None and back[2].tool_calls == records[2].tool_calls
    expected = [np.float16(lp).item() for row in LOGPROBS["top_logprobs"] for lp in row]
    assert [lp for row in back[1].top_logprobs for lp in row] == expected
    assert read_row_group(path, "hint", 1) == back[2:]


def test_dropped_rows_carry_filter_and_reason_and_read_back_by_index(tmp_path):
    path = tmp_path / "dropped.parquet"
    records = _records()
    dropped = [
        DroppedRecord(filter="dedup", reason=f"exact-duplicate: of {i}", record=r) for i, r in enumerate(records)
    ]
    with RecordsWriter(path, dropped=True) as writer:
        writer.write(dropped)
    small = [row for batch in read_batches(path, "hint", columns=["filter", "reason", "pack"]) for row in batch]
    assert small[1] == {"filter": "dedup", "reason": "exact-duplicate: of 1", "pack": "demo"}
    [row] = read_rows_at(path, "hint", [1])
    assert (row["filter"], row["reason"]) == ("dedup", "exact-duplicate: of 1")
    assert row["record"]["text"] == "Hello!" and row["record"]["token_ids"] == LOGPROBS["token_ids"]


def test_a_failed_write_leaves_no_file_and_a_truncated_one_is_named(tmp_path):
    path = tmp_path / "kept.parquet"
    with pytest.raises(RuntimeError), RecordsWriter(path) as writer:
        writer.write(_records())
        raise RuntimeError("crash mid-stage")
    assert list(tmp_path.iterdir()) == []
    with RecordsWriter(path) as writer:
        writer.write(_records())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DamagedFileError, match="not a complete Parquet file .*; run filter"):
        next(read_batches(path, "run filter"))


def test_a_file_whose_arrays_have_other_types_is_validated_and_named(tmp_path):
    """Arrays typed as the schema says are trusted as read; a rewritten file with strings for ids is refused."""
    import pyarrow as pa

    path = tmp_path / "kept.parquet"
    with RecordsWriter(path) as writer:
        writer.write(_records())
    table = pq.read_table(path)
    edited = table.set_column(
        table.schema.get_field_index("top_ids"),
        pa.field("top_ids", pa.list_(pa.list_(pa.string()))),
        pa.array([None, [["x", "y"], ["z"], ["a", "b", "c"]], None], pa.list_(pa.list_(pa.string()))),
    )
    pq.write_table(edited, path)
    with pytest.raises(DamagedFileError) as caught:
        list(read_batches(path, "run filter again"))
    assert caught.value.file == str(path) and "edited" in str(caught.value)
    # the same file with a null inside a top list: also checked, also refused
    nulls = table.set_column(
        table.schema.get_field_index("top_ids"),
        table.schema.field("top_ids"),
        pa.array([None, [[9906, None], [385], [0, 13, 30]], None], pa.list_(pa.list_(pa.uint32()))),
    )
    pq.write_table(nulls, path)
    with pytest.raises(DamagedFileError):
        list(read_batches(path, "run filter again"))


def test_the_build_survey_reads_records_without_arrays_and_finds_logprobs_in_any_row_group(tmp_path):
    plain, with_logprobs, tools = _records()
    path = tmp_path / "kept.parquet"
    with RecordsWriter(path) as writer:
        writer.write([plain, tools])  # row group 0: no logprobs
        writer.write([with_logprobs])  # row group 1
    batches = list(light_batches(path, "hint"))
    assert [[r.request_key for r in batch] for batch in batches] == [
        [plain.request_key, tools.request_key],
        [with_logprobs.request_key],
    ]
    assert batches[1][0].text == "Hello!" and batches[1][0].token_ids is None  # the arrays are not read
    assert any_logprobs(path, "hint") is True
    only_plain = tmp_path / "plain.parquet"
    with RecordsWriter(only_plain) as writer:
        writer.write([plain, tools])
    assert any_logprobs(only_plain, "hint") is False


def test_a_worker_encoded_batch_writes_the_same_files_as_the_records(tmp_path):
    """BatchTables: survivors encoded in a worker, then cut by a later step's drops, equal encoding the results."""
    records = _records() + [make_record("Say bye.", "Bye", logprobs=LOGPROBS)]
    early = [DroppedRecord(filter="finished", reason="truncated", record=records[0])]
    survivors = records[1:]
    encoded, light_survivors, light_early = BatchTables.encode(survivors, early)
    # what goes back to the main process: the same records without their token arrays
    assert [r.request_key for r in light_survivors] == [r.request_key for r in survivors]
    assert [r.text for r in light_survivors] == [r.text for r in survivors]
    assert all(r.token_ids is None and r.top_logprobs is None and not r.has_logprobs for r in light_survivors)
    assert survivors[-1].has_logprobs  # the originals are untouched
    assert [(d.filter, d.reason, d.record.request_key) for d in light_early] == [
        ("finished", "truncated", records[0].request_key)
    ]
    later = [DroppedRecord(filter="dedup", reason=f"exact-duplicate: of {records[1].request_key}", record=records[3])]
    kept_table, dropped_table = encoded.finish(survivors, survivors[:2], later)
    for name, table, items, dropped in (
        ("kept", kept_table, survivors[:2], False),
        ("dropped", dropped_table, early + later, True),
    ):
        by_records, by_tables = tmp_path / f"{name}-records.parquet", tmp_path / f"{name}-tables.parquet"
        with RecordsWriter(by_records, dropped=dropped) as writer:
            writer.write(items)
        with RecordsWriter(by_tables, dropped=dropped) as writer:
            writer.write_table(table)
        assert by_tables.read_bytes() == by_records.read_bytes(), name
    assert [r["reason"] for r in read_rows_at(tmp_path / "dropped-tables.parquet", "hint", [0, 1])] == [
        "truncated",
        f"exact-duplicate: of {records[1].request_key}",
    ]
    # only per-record steps (run before the encoding) may replace a record: a later one that did is refused
    redacted = survivors[0].model_copy(update={"text": "[REDACTED]"})
    with pytest.raises(RuntimeError, match="streaming filter step replaced a record"):
        encoded.finish(survivors, [redacted, *survivors[1:]], [])
