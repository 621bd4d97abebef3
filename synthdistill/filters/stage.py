"""The filter stage's I/O: ledger in, `filtered/{kept,dropped}.jsonl` and `report.json` out."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from synthdistill.config import DistillConfig
from synthdistill.errors import StageError
from synthdistill.filters import run_filters
from synthdistill.records import HarvestRecord


def filtered_dir(config: DistillConfig) -> Path:
    return config.run_dir / "filtered"


def run_filter_stage(config: DistillConfig) -> dict:
    """Filter every harvested record; write kept and dropped records (with reasons) and the funnel."""
    from synthdistill.harvest import ledger_path
    from synthdistill.store import HarvestStore

    ledger = ledger_path(config)
    if not ledger.exists():
        raise StageError(f"no harvest at {ledger}; run `synthdistill harvest -c {config.path.name}` first")
    with HarvestStore(ledger) as store:
        records = list(store.records())
    result = run_filters(records, config.filters)

    out = filtered_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "kept.jsonl", (r.model_dump_json() for r in result.kept))
    _write_jsonl(out / "dropped.jsonl", (d.model_dump_json() for d in result.dropped))
    reasons: dict[str, int] = {}
    for dropped in result.dropped:
        key = f"{dropped.filter}:{dropped.reason}"
        reasons[key] = reasons.get(key, 0) + 1
    report = {
        "input": len(records),
        "kept": len(result.kept),
        "dropped": len(result.dropped),
        "steps": [asdict(step) for step in result.steps],
        "drop_reasons": reasons,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def read_kept(config: DistillConfig) -> list[HarvestRecord]:
    """The records the filters kept, in harvest order."""
    path = filtered_dir(config) / "kept.jsonl"
    if not path.exists():
        raise StageError(f"no filtered records at {path}; run `synthdistill filter -c {config.path.name}` first")
    with path.open(encoding="utf-8") as handle:
        return [HarvestRecord.model_validate_json(line) for line in handle if line.strip()]


def read_report(config: DistillConfig) -> dict:
    path = filtered_dir(config) / "report.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_jsonl(path: Path, lines) -> None:
    # Write beside and rename, so a crash never leaves a half-written file in place.
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    tmp.replace(path)
