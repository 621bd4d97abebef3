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

MIN_PREFIX = 6
COLUMNS = "request_key, prompt_id, pack, sample_index, status, record, error_kind, error, attempts, updated_at"
KEY_AT_START = re.compile(r'\{"request_key":\s*"([^"]+)"')


def _ledger_rows(run_dir: Path, ident: str) -> list[tuple]:
    db = run_facts.open_ledger(run_dir)
    if db is None:
        raise InputError(f"no harvest ledger in {run_dir}; nothing to trace", file=run_dir / run_facts.LEDGER)
    try:
        exact = db.execute(
            f"SELECT {COLUMNS} FROM requests WHERE request_key = ? OR prompt_id = ? ORDER BY rowid",
            (ident, ident),
        ).fetchall()
        if exact or len(ident) < MIN_PREFIX:
            return exact
        pattern = ident.replace("%", "").replace("_", "") + "%"
        return db.execute(
            f"SELECT {COLUMNS} FROM requests WHERE request_key LIKE ? OR prompt_id LIKE ? ORDER BY rowid",
            (pattern, pattern),
        ).fetchall()
    finally:
        db.close()


def _filter_outcomes(run_dir: Path) -> tuple | None:
    """(filter names in order, request_key → (filter, reason) of dropped records, kept keys, key → changes)."""
    folder = run_dir / run_facts.FILTERED
    report = run_facts.read_json(folder / "report.json")
    if report is None:
        return None
    names = [step["name"] for step in report.get("steps", [])]
    dropped: dict[str, tuple[str, str]] = {}
    kept: set[str] = set()
    for line in _lines(folder / "dropped.jsonl"):
        item = json.loads(line)
        dropped[item["record"]["request_key"]] = (item["filter"], item["reason"])
    for line in _lines(folder / "kept.jsonl"):
        # Only the key is needed: read it from the line's start, not by parsing a record with logprobs.
        match = KEY_AT_START.match(line)
        kept.add(match.group(1) if match else json.loads(line)["request_key"])
    modified: dict[str, list[dict[str, str]]] = {}
    for line in _lines(folder / "modified.jsonl"):
        item = json.loads(line)
        modified.setdefault(item["request_key"], []).append({"filter": item.get("filter"), "note": item.get("note")})
    return names, dropped, kept, modified


def _lines(path: Path):
    if path.exists():
        with path.open(encoding="utf-8") as handle:
            yield from (line for line in handle if line.strip())


def _dataset_rows(run_dir: Path, keys: set[str]) -> dict[str, list[dict[str, str]]]:
    """request_key → [{dataset, split, file}] for every dataset row that came from it."""
    import pyarrow.parquet as pq

    found: dict[str, list[dict[str, str]]] = {}
    for file in sorted((run_dir / run_facts.DATASETS).glob("*/data/*.parquet")):
        try:
            column = pq.read_table(file, columns=["row_id"]).column("row_id").to_pylist()
        except (KeyError, OSError, ValueError):
            continue
        for row_id in set(column) & keys:
            found.setdefault(row_id, []).append(
                {
                    "dataset": file.parent.parent.name,
                    "split": file.name.split("-", 1)[0],
                    "file": file.relative_to(run_dir).as_posix(),
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
    run_dir = Path(run_dir).resolve()
    rows = _ledger_rows(run_dir, ident.strip())
    if not rows:
        raise InputError(
            f"no prompt id or training-row id '{ident}' in this run's ledger", file=run_dir / run_facts.LEDGER
        )
    decision = run_facts.read_decision(run_dir) or {}
    outcomes = _filter_outcomes(run_dir)
    in_datasets = _dataset_rows(run_dir, {row[0] for row in rows})
    samples = []
    for key, prompt_id, pack, sample_index, status, payload, error_kind, error, attempts, updated_at in rows:
        record = json.loads(payload) if payload else {}
        samples.append(
            {
                "request_key": key,
                "prompt_id": prompt_id,
                "sample_index": sample_index,
                "status": "answered" if status == "done" else "failed",
                "pack": pack,
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
                "harvested_at": record.get("harvested_at") or updated_at,
                "attempts": attempts,
                "error": f"{error_kind}: {error}" if status == "failed" else None,
                "policy": {
                    "id": record.get("policy_id") or decision.get("policy_id"),
                    "decision": record.get("decision") or decision.get("outcome"),
                    "clause": decision.get("clause"),
                    "title": decision.get("policy_title"),
                },
                "filters": _filters_of(key, outcomes) if status == "done" else None,
                "datasets": in_datasets.get(key, []),
            }
        )
    return {"id": ident, "run_dir": str(run_dir), "samples": samples}


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
