"""The filter stage's I/O: ledger in; `filtered/` out.

filtered/kept.parquet     the records that passed every step (redacted where `pii` redacts)
filtered/dropped.parquet  every dropped record with its filter and its whole reason
filtered/modified.jsonl   {filter, note, request_key} of each kept record a step changed
filtered/report.json      the funnel: per-step input/kept/dropped, reason counts, seconds

The ledger is read a row-id range at a time and the output written a row group per batch
(synthdistill/filtered_io.py, synthdistill/filters/stream.py): memory does not grow with the
number of records unless a step must see them all (`select`, a plug-in). `workers` processes
read and run the per-record steps; the output is the same for any number of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict

from synthdistill.config import DistillConfig
from synthdistill.errors import ConfigError, DamagedFileError, StageError
from synthdistill.filtered_io import BatchTables, RecordsWriter, read_batches
from synthdistill.filters import FilterContext, reason_category, resolve_step
from synthdistill.filters.stream import StreamingPipeline
from synthdistill.packs import configured_pack_infos, configured_prompt_ids
from synthdistill.policy import recheck_use
from synthdistill.records import DroppedRecord, HarvestRecord
from synthdistill.safe_write import write_lines, write_text
from synthdistill.store import HarvestStore, LedgerReader, LedgerReadError

# Records per batch (and per row group of the output). A record with 128 answer tokens at top-20 is
# ~300 KB as Python objects, so a batch of 256 holds ~80 MB (benchmarks/scale.py measures the peak).
BATCH = 256


def run(config: DistillConfig, workers: int = 1) -> dict:
    """Filter every harvested record; write kept, dropped (with reasons) and modified records and the funnel.

    The stage does the I/O: it reads the ledger, lets each filter's `prepare` hook read
    what it needs (pack verifiers, held-out files), and writes `filtered/`.
    """
    layout = config.layout
    ledger = layout.ledger
    if not ledger.exists():
        raise StageError(f"no harvest at {ledger}; run `synthdistill harvest -c {config.path.name}` first")
    recheck_use(config, "filter")
    context = FilterContext(
        project_dir=config.project_dir, config_path=config.path, packs=configured_pack_infos(config)
    )
    steps = [_prepared(spec, context, config) for spec in config.filters]
    with HarvestStore(ledger) as store:  # checks the file is a ledger (and migrates it) before it is read
        refused = store.refused_models()
    current_ids = configured_prompt_ids(config)  # 8 bytes a prompt, however many there are

    arrays = any(step.reads_arrays for step in steps)  # else they stay encoded, and are written from it

    def load(task: tuple[int, int]):
        with LedgerReader(ledger) as reader:
            try:
                stored = reader.records_in(*task, arrays=arrays)
            except LedgerReadError as exc:
                raise DamagedFileError(f"cannot read the ledger: {exc}", file=ledger) from None
        current = current_ids.contains([r.prompt_id for r in stored])
        records = [r for r, is_current in zip(stored, current) if is_current]
        records, refused_rows = split_refused(records, refused)
        records, invalid_rows = split_schema_invalid(records)
        screened = len(records) + len(refused_rows) + len(invalid_rows)
        counts = {"input": screened, "stale": len(stored) - screened}
        return records, refused_rows + invalid_rows, counts

    with LedgerReader(ledger) as reader:
        ranges = reader.answered_ranges(BATCH)
    pipeline = StreamingPipeline(steps, workers)
    layout.filtered_dir.mkdir(parents=True, exist_ok=True)
    totals = {"input": 0, "stale": 0, "kept": 0, "dropped": 0}
    reasons: dict[str, int] = {}
    modified = []
    # temp files beside, then renamed: a crash never leaves half a file; a symlinked target is refused
    with (
        RecordsWriter(layout.kept, inside=config.run_dir) as kept,
        RecordsWriter(layout.dropped, dropped=True, inside=config.run_dir) as dropped,
    ):
        for out in pipeline.run(ranges, load, BatchTables.encode):
            if out.tables is not None:  # encoded in a worker
                kept.write_table(out.tables[0])
                dropped.write_table(out.tables[1])
            else:
                kept.write(out.kept)
                dropped.write(out.dropped)
            modified += out.modified
            for key in ("input", "stale"):
                totals[key] += out.counts.get(key, 0)
            totals["kept"] += len(out.kept)
            totals["dropped"] += len(out.dropped)
            for item in out.dropped:
                key = f"{item.filter}:{reason_category(item.reason)}"
                reasons[key] = reasons.get(key, 0) + 1
    write_lines(layout.modified, (json.dumps(asdict(m)) for m in modified), inside=config.run_dir)
    report = {
        "input": totals["input"],
        "refused_by_gate": reasons_of(
            reasons, "gate"
        ),  # answers from a model the gate refused (the server answered as it)
        "schema_invalid": reasons_of(
            reasons, "schema"
        ),  # structured answers never valid for their schema (harvest re-asked)
        "kept": totals["kept"],
        "dropped": totals["dropped"],
        "modified": len(modified),
        "steps": [asdict(step) for step in pipeline.reports],
        "drop_reasons": reasons,
        # answers still in the ledger whose request is no longer planned (an edited pack row,
        # a changed sampling setting or teacher): never trained on, never deleted
        "stale": totals["stale"],
    }
    write_text(layout.filter_report, json.dumps(report, indent=2) + "\n", inside=config.run_dir)
    return report


def reasons_of(reasons: dict[str, int], step: str) -> int:
    """How many records a pseudo-step (gate, schema) dropped."""
    return sum(n for key, n in reasons.items() if key.split(":", 1)[0] == step)


def split_refused(
    records: list[HarvestRecord], refused: dict[str, str]
) -> tuple[list[HarvestRecord], list[DroppedRecord]]:
    """Answers from a model the gate refused (the server answered as it) are dropped before any filter, with why."""
    kept = [r for r in records if r.model_answered not in refused]
    dropped = [
        DroppedRecord(
            filter="gate", reason=f"answering-model-refused: {r.model_answered}: {refused[r.model_answered]}", record=r
        )
        for r in records
        if r.model_answered in refused
    ]
    return kept, dropped


def split_schema_invalid(records: list[HarvestRecord]) -> tuple[list[HarvestRecord], list[DroppedRecord]]:
    """Structured answers still invalid after the harvest's re-asks are dropped before any filter (reason `schema`)."""
    kept = [r for r in records if r.schema_error is None]
    dropped = [
        DroppedRecord(filter="schema", reason=f"schema: {r.schema_error}", record=r)
        for r in records
        if r.schema_error is not None
    ]
    return kept, dropped


def _prepared(spec, context: FilterContext, config: DistillConfig):
    """A step with its files read; a plug-in that vanished since the config loaded is a ConfigError."""
    try:
        return resolve_step(spec, context)
    except ValueError as exc:
        raise ConfigError(str(exc), file=config.path) from None


def kept_batches(config: DistillConfig, batch_size: int = BATCH) -> Iterator[list[HarvestRecord]]:
    """The records the filters kept, in harvest order, `batch_size` at a time.

    A run filtered by a version that wrote `kept.jsonl` is still read (line by line).
    """
    layout = config.layout
    hint = f"run `synthdistill filter -c {config.path.name}` again to rewrite it"
    if layout.kept.exists():
        yield from read_batches(layout.kept, hint, batch_size)
    elif layout.legacy_kept.exists():
        yield from _legacy_batches(layout.legacy_kept, hint, batch_size)
    else:
        raise StageError(f"no filtered records at {layout.kept}; run `synthdistill filter -c {config.path.name}` first")


def read_kept(config: DistillConfig) -> list[HarvestRecord]:
    """The records the filters kept, in harvest order (all in memory: tests and small runs)."""
    return [record for batch in kept_batches(config) for record in batch]


def _legacy_batches(path, hint: str, batch_size: int) -> Iterator[list[HarvestRecord]]:
    batch: list[HarvestRecord] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                batch.append(HarvestRecord.model_validate_json(line))
            except ValueError:  # pydantic's ValidationError included: a cut-off or edited line
                raise DamagedFileError(
                    f"not a complete record (the file is truncated or was edited); {hint}", file=path, line=number
                ) from None
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def read_report(config: DistillConfig) -> dict:
    path = config.layout.filter_report
    return json.loads(path.read_text()) if path.exists() else {}
