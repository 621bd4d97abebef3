"""Prompt packs (design §5): find, load, render and validate them; stable prompt ids.

A pack is a folder with `pack.yaml` (format in `packs.format`) and a JSONL file of rows,
or a `variables:` cartesian product. Each row becomes one `records.Prompt` whose id
hashes the pack name and the rendered messages, so editing one row changes only that
row's id. Everything is checked without sending a request; every problem is a
`PackError` naming the file and line and what to fix.

    loading.py    find, load (once per process) and validate a pack
    reading.py    read one pack folder: its info without rows, or its prompts one at a time
    configured.py the packs a config names, loaded once per process for every stage
    format.py     the pack.yaml format: pydantic models, JSON Schema, the starter pack
    rows.py       rows and variable combinations → rendered `Prompt`s (sandboxed jinja2)
    verifiers.py  check an answer against a pack's `verify:` (used by filters and eval)
    stats.py      `packs stats`: token lengths and duplicates
"""

from __future__ import annotations

from synthdistill.packs.configured import (
    PromptIds,
    configured_pack,
    configured_pack_infos,
    configured_packs,
    configured_prompt_ids,
    configured_prompt_stream,
    configured_prompts,
)
from synthdistill.packs.format import create_pack
from synthdistill.packs.loading import (
    ValidationReport,
    discover_packs,
    expand_references,
    load_pack,
    resolve_pack_path,
    shipped_pack_names,
    validate_pack,
)
from synthdistill.packs.reading import Pack, PackInfo

__all__ = [
    "Pack",
    "PackInfo",
    "PromptIds",
    "ValidationReport",
    "configured_pack",
    "configured_pack_infos",
    "configured_packs",
    "configured_prompt_ids",
    "configured_prompt_stream",
    "configured_prompts",
    "create_pack",
    "discover_packs",
    "expand_references",
    "load_pack",
    "resolve_pack_path",
    "shipped_pack_names",
    "validate_pack",
]
