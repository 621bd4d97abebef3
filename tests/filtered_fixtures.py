"""The filter's output files in tests: write kept records as the filter does, read rows back as dicts."""

from __future__ import annotations

from pathlib import Path

from synthdistill.filtered_io import RecordsWriter, read_rows_at, row_count
from synthdistill.records import HarvestRecord
from synthdistill.run_layout import RunLayout


def write_kept(run_dir: Path, records: list[HarvestRecord]) -> Path:
    """filtered/kept.parquet holding `records` (one row group); returns its path."""
    path = RunLayout(run_dir).kept
    with RecordsWriter(path) as writer:
        writer.write(records)
    return path


def _rows(path: Path) -> list[dict]:
    return read_rows_at(path, "test", range(row_count(path, "test")))


def kept_records(run_dir: Path) -> list[dict]:
    """The kept records as JSON-shaped dicts, in order."""
    return [row["record"] for row in _rows(RunLayout(run_dir).kept)]


def dropped_rows(run_dir: Path) -> list[dict]:
    """{filter, reason, record} of each dropped record, in order."""
    return [
        {"filter": r["filter"], "reason": r["reason"], "record": r["record"]} for r in _rows(RunLayout(run_dir).dropped)
    ]
