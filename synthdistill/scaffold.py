"""`synthdistill init`: a working copy of the shipped quickstart, with the JSON Schemas beside it.

The shipped YAML files name their schema on their first line
(`# yaml-language-server: $schema=<relative path>`), relative to where they lie inside the
tool. In a new project that path would point nowhere, so the schemas are copied into the
project's `schemas/` and each copied line is rewritten to point at the copy.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from synthdistill.shipped import schema_dir, shipped_dir

PROJECT_ITEMS = ("distill.yaml", "prompts", "policies")
SCHEMAS = ("distill.schema.json", "pack.schema.json", "policy.schema.json")
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=\S*?([\w.-]+\.schema\.json)[ \t]*$", re.MULTILINE)


def init_project(target: Path) -> list[Path]:
    """Copy the quickstart's distill.yaml, prompts/ and policies/ plus the schemas into `target`; the files written."""
    source = shipped_dir("examples") / "quickstart"
    target.mkdir(parents=True, exist_ok=True)
    for item in PROJECT_ITEMS:
        src = source / item
        if src.is_dir():
            shutil.copytree(src, target / item, dirs_exist_ok=True, ignore=shutil.ignore_patterns("outputs"))
        elif src.exists():
            shutil.copy2(src, target / item)
    (target / "schemas").mkdir(exist_ok=True)
    for name in SCHEMAS:
        shutil.copy2(schema_dir() / name, target / "schemas" / name)
    written = sorted(p for p in target.rglob("*") if p.is_file())
    for path in written:
        if path.suffix in (".yaml", ".yml"):
            point_schema_line_at(path, target / "schemas")
    return written


def point_schema_line_at(path: Path, schemas: Path) -> None:
    """Rewrite the file's `$schema=` line to the same-named schema in `schemas` (relative to the file)."""
    text = path.read_text()

    def relative(match: re.Match) -> str:
        reference = Path(os.path.relpath(schemas / match.group(1), path.parent)).as_posix()
        return f"# yaml-language-server: $schema={reference}"

    updated = SCHEMA_LINE.sub(relative, text, count=1)
    if updated != text:
        path.write_text(updated)
