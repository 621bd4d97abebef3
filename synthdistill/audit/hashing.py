"""Which files of a run folder are artifacts, their sha256 and size, and a scan for leaked secrets.

What is hashed: every regular file under the run folder, except
- the audit folder itself (`audit/`): its manifest cannot hold its own hash, so the
  manifest lists the other audit files separately (`audit_files`);
- SQLite's transient journal files (`*-wal`, `*-shm`, `*-journal`): they come and go
  as any reader opens the ledger (the audit checkpoints the log into the ledger first);
- the run folder's lock file (`.synthdistill.lock`): it says which process last held it;
- the view page (`view.html`): a rendering of the other files that `synthdistill view` rewrites
  at will (after an audit too). The ledger (`harvest/ledger.sqlite`) is hashed as it
  is on disk; an audit taken while a harvest still runs is a snapshot, and
  `audit verify` reports the ledger as changed once the harvest writes again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from synthdistill.run_layout import RunLayout

TRANSIENT_SUFFIXES = ("-wal", "-shm", "-journal")
CHUNK = 1 << 20


def is_transient(path: Path, layout: RunLayout) -> bool:
    return path.name.endswith(TRANSIENT_SUFFIXES) or path in (layout.lock, layout.view_page)


def artifact_paths(run_dir: Path) -> list[Path]:
    """Every artifact of the run, as paths relative to the run folder, sorted."""
    layout = RunLayout(run_dir)
    audit = layout.relative(layout.audit_dir)
    found = []
    for path in run_dir.rglob("*"):
        relative = path.relative_to(run_dir)
        if relative.parts[0] == audit or not path.is_file() or is_transient(path, layout):
            continue
        found.append(relative)
    return sorted(found, key=lambda p: p.as_posix())


def hash_file(path: Path, needles: Iterable[bytes] = ()) -> tuple[str, int, bool]:
    """(sha256, size, whether any needle occurs in the file), reading it once in chunks."""
    needles = [n for n in needles if n]
    keep = max((len(n) for n in needles), default=1) - 1  # overlap so a needle across chunks is seen
    digest, size, found, tail = hashlib.sha256(), 0, False, b""
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
            if needles and not found:
                window = tail + chunk
                found = any(n in window for n in needles)
                tail = window[-keep:] if keep else b""
    return digest.hexdigest(), size, found


def secret_needles(secret: str) -> list[bytes]:
    """A secret's byte forms: UTF-8 (also what JSON and URLs hold for key alphabets) and UTF-16."""
    return [secret.encode("utf-8"), secret.encode("utf-16-le")]


def hash_artifacts(run_dir: Path, secret: str | None = None) -> tuple[list[dict], list[str]]:
    """([{path, sha256, size}], paths where the secret was found) for every artifact."""
    artifacts, leaks = [], []
    needles = secret_needles(secret) if secret else []
    for relative in artifact_paths(run_dir):
        sha, size, found = hash_file(run_dir / relative, needles)
        artifacts.append({"path": relative.as_posix(), "sha256": sha, "size": size})
        if found:
            leaks.append(relative.as_posix())
    return artifacts, leaks
