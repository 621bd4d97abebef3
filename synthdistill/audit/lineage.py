"""Row-level lineage: from a prompt id or a training-row id back to its pack, teacher, decision and filters.

A training row's id (`row_id` in the datasets) is the request key of the harvest record
it came from, so one ledger lookup finds either kind of id (a unique prefix of at least
6 characters is enough).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from synthdistill.audit import run_facts
from synthdistill.errors import InputError
from synthdistill.filtered_io import read_batches
from synthdistill.run_layout import RunLayout
from synthdistill.store import LedgerReader

MIN_PREFIX = 6
KEY_AT_START = re.compile(r'\{"request_key":\s*"([^"]+)"')


def _ledger_rows(layout: RunLayout, ident: str) -> list[dict]:
    if not layout.ledger.exists():
        raise InputError(f"no harvest ledger in {layout.run_dir}; nothing to trace", file=layout.ledger)
    with LedgerReader(layout.ledger) as ledger:
        return ledger.find(ident, MIN_PREFIX)


def _filter_outcomes(layout: RunLayout) -> tuple | None:
    """(filter names in order, request_key → (filter, reason) of dropped records, kept keys, key → changes)."""
    report = run_facts.read_json(layout.filter_report)
    if report is None:
        return None
    names = [step["name"] for step in report.get("steps", [])]
    dropped: dict[str, tuple[str, str]] = {}
    kept: set[str] = set()
    for row in _rows(layout.dropped, layout.legacy_dropped, ["request_key", "filter", "reason"]):
        dropped[row["request_key"]] = (row["filter"], row["reason"])
    kept.update(row["request_key"] for row in _rows(layout.kept, layout.legacy_kept, ["request_key"]))
    modified: dict[str, list[dict[str, str]]] = {}
    for line in _lines(layout.modified):
        item = json.loads(line)
        modified.setdefault(item["request_key"], []).append({"filter": item.get("filter"), "note": item.get("note")})
    return names, dropped, kept, modified


def _rows(path: Path, legacy: Path, columns: list[str]):
    """Some columns of a filter output file (Parquet, or the JSON lines of a run filtered before 12/2026)."""
    hint = "run `synthdistill filter` again to rewrite it"
    if path.exists():
        for batch in read_batches(path, hint, batch_size=10_000, columns=columns):
            yield from batch
        return
    for line in _lines(legacy):
        # Only the key is needed of a kept line: read it from the line's start, not by parsing its logprobs.
        match = KEY_AT_START.match(line)
        if match and columns == ["request_key"]:
            yield {"request_key": match.group(1)}
            continue
        item = json.loads(line)
        record = item.get("record", item)
        yield {"request_key": record["request_key"], "filter": item.get("filter"), "reason": item.get("reason")}


def _lines(path: Path):
    if path.exists():
        with path.open(encoding="utf-8") as handle:
            yield from (line for line in handle if line.strip())


def _dataset_rows(layout: RunLayout, keys: set[str]) -> dict[str, list[dict[str, str]]]:
    """request_key → [{dataset, split, file}] for every dataset row that came from it."""
    import pyarrow.parquet as pq

    found: dict[str, list[dict[str, str]]] = {}
    for file in layout.every_split_file():
        try:
            column = pq.read_table(file, columns=["row_id"]).column("row_id").to_pylist()
        except (KeyError, OSError, ValueError):
            continue
        for row_id in set(column) & keys:
            found.setdefault(row_id, []).append(
                {
                    "dataset": file.parent.parent.name,
                    "split": layout.split_of(file),
                    "file": layout.relative(file),
                }
            )
    return found


def _filters_of(key: str, outcomes) -> dict[str, Any]:
    if outcomes is None:
        return {"status": "not filtered yet", "passed": [], "dropped_by": None, "modified_by": []}
    names, dropped, kept, modified = outcomes
    changes = modified.get(key, [])
    if key in dropped:
        name, reason = dropped[key]
        passed = names[: names.index(name)] if name in names else []
        return {
            "status": "dropped",
            "passed": passed,
            "dropped_by": {"filter": name, "reason": reason},
            "modified_by": changes,
        }
    if key in kept:
        return {"status": "kept", "passed": names, "dropped_by": None, "modified_by": changes}
    return {
        "status": "not in the filter output (harvested after the filter ran)",
        "passed": [],
        "dropped_by": None,
        "modified_by": [],
    }


def trace(run_dir: Path, ident: str) -> dict[str, Any]:
    """Everything known about one prompt id or training-row id (request key)."""
    layout = RunLayout(Path(run_dir).resolve())
    rows = _ledger_rows(layout, ident.strip())
    if not rows:
        raise InputError(f"no prompt id or training-row id '{ident}' in this run's ledger", file=layout.ledger)
    decision = run_facts.read_decision(layout)
    outcomes = _filter_outcomes(layout)
    in_datasets = _dataset_rows(layout, {row["request_key"] for row in rows})
    samples = []
    for row in rows:
        key, status = row["request_key"], row["status"]
        record = json.loads(row["record"]) if row["record"] else {}
        samples.append(
            {
                "request_key": key,
                "prompt_id": row["prompt_id"],
                "sample_index": row["sample_index"],
                "status": "answered" if status == "done" else "failed",
                "pack": row["pack"],
                "pack_version": record.get("pack_version"),
                "messages": record.get("messages"),
                "answer": record.get("text"),
                "finish_reason": record.get("finish_reason"),
                "teacher": {
                    "model_requested": record.get("model_requested"),
                    "model_answered": record.get("model_answered"),
                    "backend": record.get("backend"),
                    "endpoint": record.get("endpoint"),
                    "system_fingerprint": record.get("system_fingerprint"),
                },
                "harvested_at": record.get("harvested_at") or row["updated_at"],
                "attempts": row["attempts"],
                "error": f"{row['error_kind']}: {row['error']}" if status == "failed" else None,
                "policy": {
                    "id": record.get("policy_id") or (decision.policy_id if decision else None),
                    "decision": record.get("decision") or (decision.outcome if decision else None),
                    "clause": decision.clause if decision else None,
                    "title": decision.policy_title if decision else None,
                },
                "filters": _filters_of(key, outcomes) if status == "done" else None,
                "datasets": in_datasets.get(key, []),
            }
        )
    return {"id": ident, "run_dir": str(layout.run_dir), "samples": samples}


def render_trace(result: dict[str, Any]) -> str:
    """The trace as text for the terminal."""
    lines = [f"trace {result['id']} in {result['run_dir']}"]
    for sample in result["samples"]:
        teacher, policy = sample["teacher"], sample["policy"]
        lines += [
            "",
            f"row {sample['request_key']} (prompt {sample['prompt_id']}, sample {sample['sample_index']}): "
            f"{sample['status']}",
            f"  pack       {sample['pack']} {sample['pack_version'] or ''}".rstrip(),
        ]
        for message in sample["messages"] or []:
            lines.append(f"  {message['role']:<10} {message['content']}")
        if sample["answer"] is not None:
            lines.append(f"  answer     {sample['answer']} (finish: {sample['finish_reason']})")
        lines += [
            f"  teacher    {teacher['model_requested']} answered as {teacher['model_answered']} "
            f"({teacher['backend']}{', ' + teacher['endpoint'] if teacher['endpoint'] else ''})",
            f"  time       {sample['harvested_at']} ({sample['attempts']} attempt(s))",
            f"  policy     {policy['id']}: {policy['decision']}"
            + (f" ({policy['clause']})" if policy["clause"] else ""),
        ]
        if sample["error"]:
            lines.append(f"  error      {sample['error']}")
        filters = sample["filters"]
        if filters:
            passed = ", ".join(filters["passed"]) or "none"
            dropped = filters["dropped_by"]
            lines.append(f"  filters    {filters['status']}; passed: {passed}")
            if dropped:
                lines.append(f"             dropped by {dropped['filter']}: {dropped['reason']}")
            for change in filters["modified_by"]:
                lines.append(f"             modified by {change['filter']}: {change['note']}")
        for row in sample["datasets"]:
            lines.append(f"  dataset    {row['dataset']} {row['split']} ({row['file']})")
    return "\n".join(lines)
