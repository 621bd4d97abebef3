"""The filter stage's I/O: ledger in; `filtered/` out.

filtered/kept.jsonl       the records that passed every step (redacted where `pii` redacts)
filtered/dropped.jsonl    every dropped record with its filter and reason
filtered/modified.jsonl   {filter, note, request_key} of each kept record a step changed
filtered/report.json      the funnel: per-step input/kept/dropped, reason counts, seconds
"""

from __future__ import annotations

import json
from dataclasses import asdict

from synthdistill.config import DistillConfig
from synthdistill.errors import ConfigError, DamagedFileError, StageError
from synthdistill.filters import FilterContext, reason_category, resolve_step, run_filters
from synthdistill.packs import configured_packs, configured_prompts
from synthdistill.policy import recheck_use
from synthdistill.records import DroppedRecord, HarvestRecord
from synthdistill.safe_write import write_lines, write_text
from synthdistill.store import HarvestStore


def run(config: DistillConfig) -> dict:
    """Filter every harvested record; write kept, dropped (with reasons) and modified records and the funnel.

    The stage does the I/O: it reads the ledger, lets each filter's `prepare` hook read
    what it needs (pack verifiers, held-out files), and writes `filtered/`.
    """
    layout = config.layout
    ledger = layout.ledger
    if not ledger.exists():
        raise StageError(f"no harvest at {ledger}; run `synthdistill harvest -c {config.path.name}` first")
    recheck_use(config, "filter")
    context = FilterContext(project_dir=config.project_dir, config_path=config.path, packs=configured_packs(config))
    steps = [_prepared(spec, context, config) for spec in config.filters]
    with HarvestStore(ledger) as store:
        stored = list(store.records())
        refused = store.refused_models()
    records, stale = current_records(config, stored)
    records, refused_rows = split_refused(records, refused)
    records, invalid_rows = split_schema_invalid(records)
    result = run_filters(records, steps)
    result.dropped[:0] = refused_rows + invalid_rows

    layout.filtered_dir.mkdir(parents=True, exist_ok=True)
    # temp file beside, then rename: a crash never leaves half a file; a symlinked target is refused
    write_lines(layout.kept, (r.model_dump_json() for r in result.kept), inside=config.run_dir)
    write_lines(layout.dropped, (d.model_dump_json() for d in result.dropped), inside=config.run_dir)
    write_lines(layout.modified, (json.dumps(asdict(m)) for m in result.modified), inside=config.run_dir)
    reasons: dict[str, int] = {}
    for dropped in result.dropped:
        key = f"{dropped.filter}:{reason_category(dropped.reason)}"
        reasons[key] = reasons.get(key, 0) + 1
    report = {
        "input": len(records) + len(refused_rows) + len(invalid_rows),
        "refused_by_gate": len(refused_rows),  # answers from a model the gate refused (the server answered as it)
        "schema_invalid": len(invalid_rows),  # structured answers never valid for their schema (harvest re-asked)
        "kept": len(result.kept),
        "dropped": len(result.dropped),
        "modified": len(result.modified),
        "steps": [asdict(step) for step in result.steps],
        "drop_reasons": reasons,
        # answers still in the ledger whose request is no longer planned (an edited pack row,
        # a changed sampling setting or teacher): never trained on, never deleted
        "stale": stale,
    }
    write_text(layout.filter_report, json.dumps(report, indent=2) + "\n", inside=config.run_dir)
    return report


def current_records(config: DistillConfig, stored: list[HarvestRecord]) -> tuple[list[HarvestRecord], int]:
    """The stored records that answer a prompt of the current packs, and how many answer none.

    Matching is by prompt id (pack name + rendered messages): an edited row's old answer
    stays in the ledger for the audit but never reaches the datasets.
    """
    current_ids = {prompt.prompt_id for prompt in configured_prompts(config)}
    current = [r for r in stored if r.prompt_id in current_ids]
    return current, len(stored) - len(current)


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


def read_kept(config: DistillConfig) -> list[HarvestRecord]:
    """The records the filters kept, in harvest order."""
    path = config.layout.kept
    if not path.exists():
        raise StageError(f"no filtered records at {path}; run `synthdistill filter -c {config.path.name}` first")
    records = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(HarvestRecord.model_validate_json(line))
            except ValueError:  # pydantic's ValidationError included: a cut-off or edited line
                raise DamagedFileError(
                    "not a complete record (the file is truncated or was edited); "
                    f"run `synthdistill filter -c {config.path.name}` again to rewrite it",
                    file=path,
                    line=number,
                ) from None
    return records


def read_report(config: DistillConfig) -> dict:
    path = config.layout.filter_report
    return json.loads(path.read_text()) if path.exists() else {}
