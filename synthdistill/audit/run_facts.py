"""Read what each stage left in a run folder, without importing torch, transformers or datasets.

Every reader is tolerant: a stage that has not run yields None, a file that cannot
be read yields a note. The ledger is read through store.LedgerReader (read-only, summed in
SQL), so a ledger with large logprob records is never parsed in Python.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from synthdistill.errors import InputError
from synthdistill.policy import Decision
from synthdistill.policy.gate import read_decision as read_gate_decision
from synthdistill.run_layout import RunLayout
from synthdistill.store import LedgerReader, LedgerReadError


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is absent or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def mtime_iso(path: Path) -> str | None:
    """A file's modification time as ISO 8601 UTC, or None when it is absent."""
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    except OSError:
        return None


def front_matter(path: Path) -> dict[str, Any]:
    """The YAML metadata block at the top of a card (README.md), or {}."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    try:
        data = yaml.safe_load(text[4:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def read_decision(layout: RunLayout) -> Decision | None:
    """The gate's decision, or None when absent or unreadable (the audit reports what it can)."""
    try:
        return read_gate_decision(layout)
    except (InputError, OSError):
        return None


def harvest_facts(layout: RunLayout) -> dict[str, Any] | None:
    """Counts, failures by kind, teacher models and endpoints, time range and token totals of the ledger."""
    if not layout.ledger.exists():
        return None
    with LedgerReader(layout.ledger) as ledger:
        try:
            facts = _harvest_facts(ledger)
        except LedgerReadError as exc:
            return {"error": f"ledger unreadable: {exc}"}
    facts["plan"] = plan_facts(layout, facts["runs"])
    return facts


def _harvest_facts(ledger: LedgerReader) -> dict[str, Any]:
    status = ledger.counts()
    failures = ledger.failures_by_kind()
    groups = ledger.answer_groups()
    runs = ledger.runs()
    answered = status.get("done", 0)
    firsts = [g["first_at"] for g in groups if g["first_at"]]
    lasts = [g["last_at"] for g in groups if g["last_at"]]
    return {
        "requests": answered + status.get("failed", 0),
        "answered": answered,
        "failed": status.get("failed", 0),
        "failed_by_kind": failures,
        "with_logprobs": sum(g["with_logprobs"] or 0 for g in groups),
        "tokens_in": sum(g["tokens_in"] or 0 for g in groups),
        "tokens_out": sum(g["tokens_out"] or 0 for g in groups),
        "models_requested": _distinct(groups, "model_requested"),
        "models_answered": _distinct(groups, "model_answered"),
        "backends": _distinct(groups, "backend"),
        "endpoints": _distinct(groups, "endpoint"),
        "system_fingerprints": _distinct(groups, "system_fingerprint"),
        "packs": _pack_counts(groups),
        "policy_decisions": sorted({f"{g['policy_id']}: {g['decision']}" for g in groups}),
        "first_answer_at": min(firsts) if firsts else None,
        "last_answer_at": max(lasts) if lasts else None,
        "runs": runs,
        "prompts": (runs[-1]["summary"] or {}).get("prompts") if runs else None,
        "shard": (runs[-1]["summary"] or {}).get("shard") if runs else None,
        "merges": ledger.merges(),
    }


def plan_facts(layout: RunLayout, runs: list[dict]) -> dict[str, Any] | None:
    """What the last harvest planned (harvest/plan.json) beside what it spent (its run summary in the ledger)."""
    plan = read_json(layout.plan)
    if not isinstance(plan, dict):
        return None
    total = plan.get("total") or {}
    spent = (runs[-1].get("summary") if runs else None) or {}
    time = plan.get("time") or {}
    return {
        "price_source": plan.get("price_source"),
        "cost_applies": plan.get("cost_applies"),
        "prompt_tokens_method": plan.get("prompt_tokens_method"),
        "requests": {"planned": total.get("to_send"), "spent": spent.get("requests_sent")},
        "prompt_tokens": {"planned": total.get("prompt_tokens"), "spent": spent.get("tokens_in")},
        "answer_tokens": {
            "planned": {"expected": total.get("output_tokens_expected"), "max": total.get("output_tokens_max")},
            "spent": spent.get("tokens_out"),
        },
        "cost_usd": {
            "planned": total.get("cost_usd_batch" if plan.get("cost_applies") == "batch" else "cost_usd"),
            "spent": spent.get("cost_usd"),
        },
        "seconds": {
            "planned": {"seconds": time.get("seconds"), "bound": time.get("bound")},
            "spent": spent.get("seconds"),
        },
        "run_finished": bool(spent),
    }


def _distinct(groups: list[dict], key: str) -> list:
    return sorted({g[key] for g in groups if g[key]})


def _pack_counts(groups: list[dict]) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str], int] = {}
    for g in groups:
        key = (g["pack"], g["pack_version"])
        counts[key] = counts.get(key, 0) + g["answers"]
    return [{"pack": pack, "version": version, "answered": n} for (pack, version), n in sorted(counts.items())]


def filter_facts(layout: RunLayout) -> dict[str, Any] | None:
    """The filter stage's report.json (input, kept, dropped, steps, drop reasons)."""
    report = read_json(layout.filter_report)
    if report is None:
        return None
    return {**report, "written_at": mtime_iso(layout.filter_report)}


def parquet_rows(path: Path) -> int | None:
    """Row count from a Parquet footer (no data read)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):
        return None


def dataset_facts(layout: RunLayout) -> dict[str, dict[str, Any]]:
    """Each dataset folder (sft, kd): rows per split, card metadata, provenance and build info."""
    found: dict[str, dict[str, Any]] = {}
    for folder in sorted(p for p in layout.datasets_dir.glob("*") if p.is_dir()):
        kind = folder.name
        splits: dict[str, int] = {}
        for file in layout.split_files(kind):
            split = layout.split_of(file)
            rows = parquet_rows(file)
            if rows is not None:
                splits[split] = splits.get(split, 0) + rows
        card = front_matter(layout.dataset_card(kind))
        found[kind] = {
            "path": layout.relative(folder),
            "splits": splits,
            "rows": sum(splits.values()),
            "licence": card.get("license_name") or card.get("license"),
            "source_datasets": card.get("source_datasets", []),
            "provenance": read_json(layout.dataset_provenance(kind)),
            "build": read_json(layout.dataset_build(kind)),
            "written_at": mtime_iso(layout.dataset_card(kind)),
        }
    return found


def student_facts(layout: RunLayout) -> dict[str, Any] | None:
    """The trained student: its card metadata, training summary files and size."""
    folder = layout.student_dir
    if not folder.is_dir():
        return None
    files = [p for p in folder.rglob("*") if p.is_file()]
    card = front_matter(layout.student_card)
    summaries = {
        p.name: read_json(p)
        for p in sorted(folder.glob("*.json"))
        if any(word in p.name for word in ("summary", "train", "provenance"))
    }
    return {
        "path": layout.relative(folder),
        "name": _heading(layout.student_card),
        "train": read_json(layout.train_summary),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "card": card,
        "summaries": summaries,
        # train.json: eval rewrites the card (its model-index) later
        "written_at": mtime_iso(layout.train_summary) or mtime_iso(layout.student_card) or mtime_iso(folder),
    }


def _heading(path: Path) -> str | None:
    """The first Markdown heading of a card (the model card titles itself with the student's name)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((line[2:].strip() for line in lines if line.startswith("# ")), None)


def eval_facts(layout: RunLayout) -> dict[str, Any] | None:
    data = read_json(layout.eval_result)
    if data is None:
        return None
    return {**data, "written_at": mtime_iso(layout.eval_result)} if isinstance(data, dict) else {"raw": data}


def config_snapshots(layout: RunLayout) -> dict[str, dict[str, Any]]:
    """The overrides each stage last ran with (config/<stage>.json, written only for a stage run with --set)."""
    found: dict[str, dict[str, Any]] = {}
    for path in layout.config_snapshots():
        snapshot = read_json(path)
        if not isinstance(snapshot, dict):
            found[path.stem] = {"path": layout.relative(path), "note": "unreadable"}
            continue
        found[str(snapshot.get("stage") or path.stem)] = {
            "path": layout.relative(path),
            "written_at": snapshot.get("written_at"),
            "config_sha256": (snapshot.get("config") or {}).get("sha256"),
            "overrides": snapshot.get("overrides") or [],
            "effective_sha256": snapshot.get("effective_sha256"),
        }
    return found
