"""Folders that ship with the tool: prompt packs, policies, examples."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The tool is installed from its source tree (`pip install -e .`), whose top level holds
# prompts/, policies/ and examples/ beside the package (design §2).
SOURCE_ROOT = PACKAGE_DIR.parent


def shipped_dir(name: str) -> Path:
    """`prompts`, `policies` or `examples` as shipped with the tool."""
    return SOURCE_ROOT / name
