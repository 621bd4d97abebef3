"""Writes that stay where they are meant to go: temp file beside the target, then rename.

A run folder is read by people and tools, and sometimes prepared by someone else. A
symlink planted at `outputs/<run>/harvest/decision.json` must not let a run overwrite
the file it points to, and a crash must never leave half a file in place. So:

- a target that is a symlink is refused (`UnsafeWriteError`, exit 2), as is a target
  whose folder leads outside `inside` (a symlinked sub-folder of the run folder);
- the text goes to a new temp file in the target's folder (created with O_EXCL, so it
  follows no link either), is flushed to disk, and is renamed over the target;
  a rename replaces a name, never the file behind a link.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from synthdistill.errors import UnsafeWriteError


def check_target(path: Path, inside: Path | None = None) -> None:
    """Refuse a symlinked target, or one whose folder resolves outside `inside`."""
    if path.is_symlink():
        raise UnsafeWriteError(
            f"is a symlink (to {os.readlink(path)}); refusing to write through it: remove the link", file=path
        )
    if inside is not None:
        root = Path(inside).resolve()
        folder = path.parent.resolve()
        if folder != root and root not in folder.parents:
            raise UnsafeWriteError(
                f"its folder leads outside {root} (to {folder}, through a symlink); refusing to write there", file=path
            )


def write_lines(path: Path, lines: Iterable[str], inside: Path | None = None) -> None:
    """Write `lines` (each without its newline) to `path` atomically, following no symlink."""
    _write_atomically(path, inside, lambda out: out.writelines(f"{line}\n" for line in lines))


def write_text(path: Path, text: str, inside: Path | None = None) -> None:
    """Write `text` to `path` atomically, following no symlink."""
    _write_atomically(path, inside, lambda out: out.write(text))


def _write_atomically(path: Path, inside: Path | None, write: Callable[[TextIO], object]) -> None:
    # A temp file beside the target, synced, then renamed over it: a crash leaves the old file or the new one.
    path = Path(path)
    check_target(path, inside)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
