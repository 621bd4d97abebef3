"""One writer per run folder: an OS file lock held for the whole life of a stage.

Two harvests on one project would both pay for every request, and a filter or build
running beside a harvest reads a ledger that is still changing. So every stage that
writes into `<output_dir>/<name>/` takes an exclusive `flock` on `<run>/.synthdistill.lock`
first; a second process gets `RunFolderBusy` (exit 2) at once, naming the holder.

Why `flock` on an open file rather than "a file exists" or `filelock`: the kernel drops
the lock when its holder dies, however it dies (`kill -9` included), so a stale lock
can never block; and the holder writes its pid and command into the locked file
itself, which the refused process reads to name it (`filelock` truncates the file
on open, which would erase the holder's pid).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthdistill.errors import RunFolderBusy
from synthdistill.run_layout import RunLayout


def _holder(handle: int) -> str:
    os.lseek(handle, 0, os.SEEK_SET)
    text = os.read(handle, 4096).decode("utf-8", "replace").strip()
    return text or "another process (pid not yet written)"


@contextmanager
def run_folder_lock(run_dir: Path, command: str) -> Iterator[Path]:
    """Hold the run folder's lock while the block runs; RunFolderBusy if another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = RunLayout(run_dir).lock
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.open(path, flags, 0o644)
    except OSError as exc:
        raise RunFolderBusy(f"cannot open the run folder's lock file: {exc.strerror}", file=path) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(
                f"the run folder is in use by {_holder(handle)}; wait for it to finish "
                "(or stop it; a stopped run resumes where it left off)",
                file=run_dir,
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"pid {os.getpid()} (synthdistill {command})\n".encode(), 0)
        yield path
    finally:
        os.close(handle)  # closing the last descriptor releases the flock


def is_secondary_rank() -> bool:
    """True in the non-zero ranks of a distributed launch, which share rank 0's lock."""
    return os.environ.get("RANK", "0") != "0"
