"""The sha256 of a file, the one digest provenance, cards, packs and policies record."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (a dataset shard or rows file may be large)."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def json_sha256(value: Any) -> str:
    """Hex sha256 of a JSON value in canonical form (sorted keys, no spaces): the effective config's digest."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
