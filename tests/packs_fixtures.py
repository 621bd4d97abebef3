"""Write prompt packs on disk for tests: from fields (valid by default) or from raw text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DEFAULT_ROWS = [{"question": "What is 2 + 3?", "answer": 5}, {"question": "What is 7 * 6?", "answer": 42}]


def pack_fields(name: str = "demo", **overrides: Any) -> dict[str, Any]:
    """The keys of a small valid rows pack; a value of None removes that key."""
    fields: dict[str, Any] = {
        "name": name,
        "version": "1.0.0",
        "description": "Test prompts.",
        "licence": "CC0-1.0",
        "source": "written for the tests",
        "tags": ["test"],
        "system": "Answer briefly.",
        "template": "{{ question }}",
        "rows": "rows.jsonl",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def write_rows(path: Path, rows: list[Any]) -> Path:
    """One JSON value per line."""
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def write_pack(parent: Path, name: str = "demo", rows: list[Any] | None = None, **overrides: Any) -> Path:
    """A pack folder `parent/name` with pack.yaml from `pack_fields` and rows.jsonl from `rows`."""
    folder = Path(parent) / name
    folder.mkdir(parents=True, exist_ok=True)
    fields = pack_fields(name, **overrides)
    (folder / "pack.yaml").write_text(yaml.safe_dump(fields, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if fields.get("rows") == "rows.jsonl":
        write_rows(folder / "rows.jsonl", DEFAULT_ROWS if rows is None else rows)
    return folder


def write_raw_pack(parent: Path, pack_yaml: str | bytes, rows: str | bytes | None = None, name: str = "demo") -> Path:
    """A pack folder from exact text (for tests that point at a line)."""
    folder = Path(parent) / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, content in (("pack.yaml", pack_yaml), ("rows.jsonl", rows)):
        if content is not None:
            data = content.encode("utf-8") if isinstance(content, str) else content
            (folder / file).write_bytes(data)
    return folder


# A valid pack.yaml whose lines the tests refer to by number.
PACK_YAML = """\
name: demo
version: 1.0.0
description: Test prompts.
licence: CC0-1.0
source: written for the tests
system: Answer briefly.
template: "{{ question }}"
rows: rows.jsonl
"""
ROWS_JSONL = '{"question": "What is 2 + 3?"}\n{"question": "Name a prime."}\n{"question": "Spell cat."}\n'
