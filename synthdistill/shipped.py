"""What ships inside the package: prompt packs, policies, examples and JSON Schemas.

Found with `importlib.resources`, so the same code serves an installed wheel and a source tree.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _on_disk(resource) -> Path:
    """A package resource as a folder on disk (wheels install as files; a zipped install is not supported)."""
    if not isinstance(resource, Path):
        raise RuntimeError(f"synthdistill must be installed as files on disk, not zipped ({resource})")
    return resource


def shipped_dir(name: str) -> Path:
    """`prompts`, `policies` or `examples` as shipped with the tool (package data under synthdistill/data/)."""
    return _on_disk(files("synthdistill") / "data" / name)


def schema_dir() -> Path:
    """The JSON Schemas of distill.yaml, pack.yaml and policy files."""
    return _on_disk(files("synthdistill") / "schemas")
