"""Read what a run folder holds for the view: the I/O at the edge, shaping lives in shape.py.

Everything is read through `RunLayout`: the ledger with `store.LedgerReader` (read-only),
the filter's Parquet files, the datasets' Parquet footers and the stages' JSON files. Records
are sampled without parsing the rest: the filter's files by row index (their small columns
read for the tallies), the ledger by row ids, and only the sampled rows are parsed.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthdistill.audit import run_facts
from synthdistill.audit.manifest import funnel, teacher_entries
from synthdistill.filtered_io import read_batches, read_rows_at
from synthdistill.run_layout import RunLayout
from synthdistill.store import LedgerReader, LedgerReadError

SAMPLE_SEED = 0


@dataclass
class RunData:
    """The raw material of one page: facts of each stage and a sample of records."""

    run_dir: Path
    teacher: dict[str, Any]
    harvest: dict[str, Any] | None
    filtered: dict[str, Any] | None
    datasets: dict[str, dict[str, Any]]
    train: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    funnel_steps: list[dict[str, Any]]
    pack_counts: list[dict[str, Any]]
    # {"status": kept | dropped | answered, "filter": …, "reason": …, "record": {…}} per sampled record
    records: list[dict[str, Any]] = field(default_factory=list)
    # per status: records in the run folder (the sample's population)
    populations: dict[str, int] = field(default_factory=dict)
    # {status, pack, filter, reason} of every filtered record (the per-pack funnel counts them)
    tallies: list[dict[str, Any]] = field(default_factory=list)
    audit_report: Path | None = None


def _field_pattern(name: str) -> re.Pattern[bytes]:
    # the first `"name":"…"` of a line; a string value holding those characters has them escaped
    return re.compile(rb'"' + name.encode() + rb'":("(?:[^"\\]|\\.)*")')


FIELDS = {name: _field_pattern(name) for name in ("filter", "reason", "pack")}


def index_lines(path: Path, fields: tuple[str, ...] = ()) -> tuple[list[int], list[dict[str, str | None]]]:
    """The byte offset of every non-empty JSON line and the first value of each of `fields` in it.

    Nothing is parsed but the fields' strings, so a file of large records is indexed quickly.
    """
    offsets, values, position = [], [], 0
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                offsets.append(position)
                found = {}
                for name in fields:
                    match = FIELDS[name].search(line)
                    found[name] = json.loads(match.group(1)) if match else None
                values.append(found)
            position += len(line)
    return offsets, values


def read_lines_at(path: Path, offsets: list[int]) -> list[dict[str, Any]]:
    """The JSON lines that begin at the given offsets; a damaged line is skipped."""
    found = []
    with path.open("rb") as handle:
        for offset in sorted(offsets):
            handle.seek(offset)
            try:
                found.append(json.loads(handle.readline()))
            except ValueError:
                continue
    return found


def sample_indices(population: int, count: int, seed: int = SAMPLE_SEED) -> list[int]:
    """`count` of `population` indices, a seeded random choice, sorted (all of them when they fit)."""
    if population <= count:
        return list(range(population))
    return sorted(random.Random(seed).sample(range(population), count))


def split_quota(populations: dict[str, int], total: int) -> dict[str, int]:
    """Share `total` sampled records among the statuses: evenly, what one cannot use goes to the others."""
    quota = dict.fromkeys(populations, 0)
    left = total
    open_ = [s for s, n in populations.items() if n > 0]
    while left > 0 and open_:
        share = max(1, left // len(open_))
        for status in list(open_):
            take = min(share, populations[status] - quota[status], left)
            quota[status] += take
            left -= take
            if quota[status] >= populations[status]:
                open_.remove(status)
            if left == 0:
                break
    return quota


def _filtered_records(layout: RunLayout, max_records: int):
    files = {"kept": (layout.kept, ("pack",)), "dropped": (layout.dropped, ("filter", "reason", "pack"))}
    hint = "run `synthdistill filter` again to rewrite it"
    tallies = []
    populations = {}
    for status, (path, fields) in files.items():
        values = [] if not path.exists() else read_batches(path, hint, batch_size=50_000, columns=list(fields))
        found = [row for batch in values for row in batch]
        populations[status] = len(found)
        tallies += [{"status": status, **row} for row in found]
    records = []
    for status, count in split_quota(populations, max_records).items():
        if not count:
            continue
        for row in read_rows_at(files[status][0], hint, sample_indices(populations[status], count)):
            records.append(
                {"status": status, "filter": row.get("filter"), "reason": row.get("reason"), "record": row["record"]}
            )
    return records, populations, tallies


def _legacy_filtered_records(layout: RunLayout, max_records: int):
    """The same from a run filtered before 12/2026 (kept.jsonl and dropped.jsonl)."""
    files = {"kept": (layout.legacy_kept, ("pack",)), "dropped": (layout.legacy_dropped, ("filter", "reason", "pack"))}
    indexed = {s: index_lines(path, fields) if path.exists() else ([], []) for s, (path, fields) in files.items()}
    populations = {status: len(offsets) for status, (offsets, _) in indexed.items()}
    tallies = [{"status": status, **found} for status, (_, values) in indexed.items() for found in values]
    records = []
    for status, count in split_quota(populations, max_records).items():
        offsets = indexed[status][0]
        chosen = [offsets[i] for i in sample_indices(populations[status], count)]
        for line in read_lines_at(files[status][0], chosen):
            if status == "kept":
                records.append({"status": "kept", "filter": None, "reason": None, "record": line})
            else:
                entry = {"filter": line.get("filter"), "reason": line.get("reason"), "record": line.get("record")}
                records.append({"status": "dropped", **entry})
    return records, populations, tallies


def _ledger_records(layout: RunLayout, max_records: int):
    with LedgerReader(layout.ledger) as ledger:
        rowids = ledger.answered_rowids()
        chosen = [rowids[i] for i in sample_indices(len(rowids), max_records)]
        payloads = ledger.record_payloads(chosen)
    records = [{"status": "answered", "filter": None, "reason": None, "record": p} for p in payloads]
    return records, {"answered": len(rowids)}, []


def sampled_records(layout: RunLayout, max_records: int) -> tuple[list[dict], dict[str, int], list[dict]]:
    """A seeded sample of the filter's kept and dropped records, else (no filter yet) of the ledger's answers.

    Returns (sampled records, records per status, {status, pack, filter, reason} of every filtered record).
    """
    if layout.kept.exists():
        return _filtered_records(layout, max_records)
    if layout.legacy_kept.exists():
        return _legacy_filtered_records(layout, max_records)
    if layout.ledger.exists():
        try:
            return _ledger_records(layout, max_records)
        except LedgerReadError:
            return [], {}, []
    return [], {}, []


def pack_counts(layout: RunLayout) -> list[dict[str, Any]]:
    """Per pack: prompts, requests, answered, failed (from the ledger)."""
    if not layout.ledger.exists():
        return []
    try:
        with LedgerReader(layout.ledger) as ledger:
            return ledger.pack_counts()
    except LedgerReadError:
        return []


def read_run(run_dir: Path, max_records: int) -> RunData:
    """Everything the page shows, read from the run folder."""
    layout = RunLayout(run_dir)
    harvest = run_facts.harvest_facts(layout)
    filtered = run_facts.filter_facts(layout)
    datasets = run_facts.dataset_facts(layout)
    decision = run_facts.read_decision(layout)
    records, populations, tallies = sampled_records(layout, max_records)
    return RunData(
        run_dir=layout.run_dir,
        teacher=teacher_entries(None, decision, None, harvest)[0],
        harvest=harvest,
        filtered=filtered,
        datasets=datasets,
        train=run_facts.read_json(layout.train_summary),
        evaluation=run_facts.eval_facts(layout),
        funnel_steps=funnel(harvest, filtered, datasets),
        pack_counts=pack_counts(layout),
        records=records,
        populations=populations,
        tallies=tallies,
        audit_report=layout.report_html if layout.report_html.exists() else None,
    )
