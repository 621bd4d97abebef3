"""Build real harvest projects for tests: a tiny pack, a project policy, a distill.yaml aimed at a server."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import yaml

from synthdistill.store import LedgerReader
from tests.openai_server import answer_text

FAKE_MODEL = "fake-model"
FAKE_POLICY = {
    "id": "fake",
    "title": "Terms of the fake test teacher",
    "kind": "api-terms",
    # "served-name": what a server started with --served-model-name answers as (the gate decides on it too)
    "applies_to": {"models": [FAKE_MODEL, "served-name"], "hosts": []},
    "document": {"url": "https://example.invalid/fake-terms", "version": "2026-01-01", "retrieved": "2026-01-01"},
    "licence": {"spdx": "LicenseRef-fake-terms", "name": "Fake terms"},
    "outputs_for_training": "allowed",
    "clause": "§1: outputs may be used for any purpose",
}


def question(i: int) -> str:
    return f"Question {i}: what is {i} plus {i}?"


def write_pack(folder: Path, questions: list[str], name: str = "tiny") -> Path:
    """A pack folder whose template is the question itself."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"name": name, "version": "1.0.0", "licence": "CC0-1.0", "template": "{{ q }}", "rows": "rows.jsonl"}
    (folder / "pack.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (folder / "rows.jsonl").write_text("".join(json.dumps({"q": q}) + "\n" for q in questions))
    return folder


def write_project(
    root: Path,
    base_url: str | list[str],
    n_prompts: int = 10,
    *,
    teacher: dict | None = None,
    harvest: dict | None = None,
    pricing: dict | None = None,
) -> Path:
    """A project (pack, policies/fake.yaml, optional pricing.yaml, distill.yaml); returns distill.yaml's path."""
    root.mkdir(parents=True, exist_ok=True)
    write_pack(root / "prompts" / "tiny", [question(i) for i in range(n_prompts)])
    (root / "policies").mkdir(exist_ok=True)
    (root / "policies" / "fake.yaml").write_text(yaml.safe_dump(FAKE_POLICY, sort_keys=False))
    if pricing is not None:
        (root / "pricing.yaml").write_text(yaml.safe_dump(pricing, sort_keys=False))
    config = {
        "name": "run",
        "teacher": {
            "backend": "openai",
            "model": FAKE_MODEL,
            "base_url": base_url,
            "policy": "fake",
            "max_concurrency": 8,
            "timeout_s": 10,
            "max_retries": 8,
            **(teacher or {}),
        },
        "harvest": {"packs": ["prompts/tiny"], "max_tokens": 64, "top_logprobs": 5, **(harvest or {})},
    }
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def ledger_of(project: Path) -> Path:
    return project / "outputs" / "run" / "harvest" / "ledger.sqlite"


def done_count(ledger: Path) -> int:
    """Answers committed so far (read while a harvest writes: WAL lets readers in)."""
    if not ledger.exists():
        return 0
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM requests WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    finally:
        db.close()


def ledger_rows(ledger: Path) -> list[tuple[str, str, str | None]]:
    """(request_key, status, record JSON) of every ledger row (its logprobs put back from their blob)."""
    with LedgerReader(ledger) as reader:
        return [(row["request_key"], row["status"], row["record"]) for row in reader.rows()]


def assert_each_prompt_answered_once(ledger: Path, n_prompts: int) -> list[dict]:
    """Every question answered exactly once, each answer stored with its own prompt; returns the records."""
    rows = ledger_rows(ledger)
    records = [json.loads(r[2]) for r in rows if r[1] == "done"]
    assert len(rows) == len(records) == n_prompts, (len(rows), len(records))
    asked = sorted(rec["messages"][-1]["content"] for rec in records)
    assert asked == sorted(question(i) for i in range(n_prompts))
    for rec in records:
        assert rec["text"] == answer_text(rec["messages"][-1]["content"])
    assert len({rec["request_key"] for rec in records}) == n_prompts
    return records
