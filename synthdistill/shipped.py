"""What ships inside the package: prompt packs, policies, examples and JSON Schemas.

Found with `importlib.resources`, so the same code serves an installed wheel and a source tree.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The tool is installed from its source tree (`pip install -e .`), whose top level holds
# prompts/, policies/ and examples/ beside the package (design §2).
SOURCE_ROOT = PACKAGE_DIR.parent


def _on_disk(resource) -> Path:
    """A package resource as a folder on disk (wheels install as files; a zipped install is not supported)."""
    if not isinstance(resource, Path):
        raise RuntimeError(f"synthdistill must be installed as files on disk, not zipped ({resource})")
    return resource


def shipped_dir(name: str) -> Path:
    """`prompts`, `policies` or `examples` as shipped with the tool."""
    return SOURCE_ROOT / name


def schema_dir() -> Path:
    """The JSON Schemas of distill.yaml, pack.yaml and policy files."""
    return _on_disk(files("synthdistill") / "schemas")
