"""Read what each stage left in a run folder, without importing torch, transformers or datasets.

Every reader is tolerant: a stage that has not run yields None, a file that cannot
be read yields a note. The SQLite ledger is opened read-only and summarised with SQL
(json_extract), so a ledger with large logprob records is never parsed in Python.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LEDGER = Path("harvest") / "ledger.sqlite"
DECISION = Path("harvest") / "decision.json"
FILTERED = Path("filtered")
DATASETS = Path("datasets")
STUDENT = Path("student")
EVAL = Path("eval.json")


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
    import yaml

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


def open_ledger(run_dir: Path) -> sqlite3.Connection | None:
    """The ledger opened read-only (the audit never writes to it), or None.

    With no write-ahead log pending, it is opened `immutable`: SQLite then creates no
    -wal/-shm files beside it. A pending log (a harvest running or killed) must be read too.
    """
    path = run_dir / LEDGER
    if not path.exists():
        return None
    wal = path.with_name(path.name + "-wal")
    pending = wal.exists() and wal.stat().st_size > 0
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{'' if pending else '&immutable=1'}", uri=True)


def read_decision(run_dir: Path) -> dict[str, Any] | None:
    return read_json(run_dir / DECISION)


def harvest_facts(run_dir: Path) -> dict[str, Any] | None:
    """Counts, failures by kind, teacher models and endpoints, time range and token totals of the ledger."""
    db = open_ledger(run_dir)
    if db is None:
        return None
    try:
        return _harvest_facts(db)
    except sqlite3.Error as exc:
        return {"error": f"ledger unreadable: {exc}"}
    finally:
        db.close()


def _harvest_facts(db: sqlite3.Connection) -> dict[str, Any]:
    status = dict(db.execute("SELECT status, COUNT(*) FROM requests GROUP BY status").fetchall())
    failures = dict(
        db.execute("SELECT error_kind, COUNT(*) FROM requests WHERE status = 'failed' GROUP BY error_kind").fetchall()
    )
    groups = db.execute(
        """
        SELECT json_extract(record, '$.model_requested'), json_extract(record, '$.model_answered'),
               json_extract(record, '$.backend'), json_extract(record, '$.endpoint'),
               json_extract(record, '$.system_fingerprint'), json_extract(record, '$.pack'),
               json_extract(record, '$.pack_version'), json_extract(record, '$.policy_id'),
               json_extract(record, '$.decision'), COUNT(*),
               MIN(json_extract(record, '$.harvested_at')), MAX(json_extract(record, '$.harvested_at')),
               SUM(json_extract(record, '$.usage.prompt_tokens')),
               SUM(json_extract(record, '$.usage.completion_tokens')),
               SUM(json_extract(record, '$.top_logprobs') IS NOT NULL)
        FROM requests WHERE status = 'done' GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
        """
    ).fetchall()
    runs = [
        {"started_at": started, "finished_at": finished, "summary": json.loads(summary) if summary else None}
        for started, finished, summary in db.execute(
            "SELECT started_at, finished_at, summary FROM harvest_runs ORDER BY id"
        )
    ]
    answered = status.get("done", 0)
    firsts = [g[10] for g in groups if g[10]]
    lasts = [g[11] for g in groups if g[11]]
    return {
        "requests": answered + status.get("failed", 0),
        "answered": answered,
        "failed": status.get("failed", 0),
        "failed_by_kind": failures,
        "with_logprobs": sum(g[14] or 0 for g in groups),
        "tokens_in": sum(g[12] or 0 for g in groups),
        "tokens_out": sum(g[13] or 0 for g in groups),
        "models_requested": sorted({g[0] for g in groups if g[0]}),
        "models_answered": sorted({g[1] for g in groups if g[1]}),
        "backends": sorted({g[2] for g in groups if g[2]}),
        "endpoints": sorted({g[3] for g in groups if g[3]}),
        "system_fingerprints": sorted({g[4] for g in groups if g[4]}),
        "packs": _pack_counts(groups),
        "policy_decisions": sorted({f"{g[7]}: {g[8]}" for g in groups}),
        "first_answer_at": min(firsts) if firsts else None,
        "last_answer_at": max(lasts) if lasts else None,
        "runs": runs,
        "prompts": (runs[-1]["summary"] or {}).get("prompts") if runs else None,
    }


def _pack_counts(groups: list[tuple]) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str], int] = {}
    for g in groups:
        counts[(g[5], g[6])] = counts.get((g[5], g[6]), 0) + g[9]
    return [{"pack": pack, "version": version, "answered": n} for (pack, version), n in sorted(counts.items())]


def filter_facts(run_dir: Path) -> dict[str, Any] | None:
    """The filter stage's report.json (input, kept, dropped, steps, drop reasons)."""
    report = read_json(run_dir / FILTERED / "report.json")
    if report is None:
        return None
    return {**report, "written_at": mtime_iso(run_dir / FILTERED / "report.json")}


def parquet_rows(path: Path) -> int | None:
    """Row count from a Parquet footer (no data read)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):
        return None


def dataset_facts(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Each dataset folder (sft, kd): rows per split, card metadata, provenance and build info."""
    found: dict[str, dict[str, Any]] = {}
    for folder in sorted(p for p in (run_dir / DATASETS).glob("*") if p.is_dir()):
        splits: dict[str, int] = {}
        for file in sorted((folder / "data").glob("*.parquet")):
            split = file.name.split("-", 1)[0]
            rows = parquet_rows(file)
            if rows is not None:
                splits[split] = splits.get(split, 0) + rows
        card = front_matter(folder / "README.md")
        found[folder.name] = {
            "path": folder.relative_to(run_dir).as_posix(),
            "splits": splits,
            "rows": sum(splits.values()),
            "licence": card.get("license_name") or card.get("license"),
            "source_datasets": card.get("source_datasets", []),
            "provenance": read_json(folder / "provenance.json"),
            "build": read_json(folder / "build.json"),
            "written_at": mtime_iso(folder / "README.md"),
        }
    return found


def student_facts(run_dir: Path) -> dict[str, Any] | None:
    """The trained student: its card metadata, training summary files and size."""
    folder = run_dir / STUDENT
    if not folder.is_dir():
        return None
    files = [p for p in folder.rglob("*") if p.is_file()]
    card = front_matter(folder / "README.md")
    summaries = {
        p.name: read_json(p)
        for p in sorted(folder.glob("*.json"))
        if any(word in p.name for word in ("summary", "train", "provenance"))
    }
    return {
        "path": STUDENT.as_posix(),
        "name": _heading(folder / "README.md"),
        "train": read_json(folder / "train.json"),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "card": card,
        "summaries": summaries,
        "written_at": mtime_iso(folder / "README.md") or mtime_iso(folder),
    }


def _heading(path: Path) -> str | None:
    """The first Markdown heading of a card (the model card titles itself with the student's name)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((line[2:].strip() for line in lines if line.startswith("# ")), None)


def eval_facts(run_dir: Path) -> dict[str, Any] | None:
    data = read_json(run_dir / EVAL)
    if data is None:
        return None
    return {**data, "written_at": mtime_iso(run_dir / EVAL)} if isinstance(data, dict) else {"raw": data}
