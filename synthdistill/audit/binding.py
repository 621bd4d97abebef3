"""What binds an audit to the run it describes, beyond the hashes in the manifest.

- The ledger is hashed as it is on disk, but SQLite in WAL mode keeps recent writes in
  `ledger.sqlite-wal`, which every reader already sees. So the audit folds the log
  into the ledger (a checkpoint, which changes no row) before it hashes, and
  `verify` reports a non-empty log as a change to the ledger: an edit waiting there
  would otherwise pass unseen.
- A manifest can be rewritten together with the file it describes. Its own sha256 is
  printed by `audit`, kept in `audit/manifest.sha256` (`sha256sum -c` format) and in
  the JSON summary; `audit verify --expect SHA256` fails unless the manifest on disk
  still has the hash the user noted (kept elsewhere, it is what binds).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from synthdistill.audit.hashing import AUDIT_DIR, hash_file
from synthdistill.errors import DamagedFileError
from synthdistill.safe_write import write_text

LEDGER = Path("harvest") / "ledger.sqlite"
MANIFEST = Path(AUDIT_DIR) / "manifest.json"
MANIFEST_SHA = Path(AUDIT_DIR) / "manifest.sha256"


def wal_of(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + "-wal")


def checkpoint_ledger(run_dir: Path) -> None:
    """Fold a pending write-ahead log into the ledger (and remove it) so the ledger's hash covers it."""
    ledger = Path(run_dir) / LEDGER
    wal = wal_of(ledger)
    if not ledger.is_file() or not wal.exists():
        return
    try:
        db = sqlite3.connect(ledger, timeout=10)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            db.close()  # the last connection to close deletes the -wal file
    except sqlite3.DatabaseError as exc:
        raise DamagedFileError(f"the harvest ledger is damaged ({exc}); the audit cannot hash it", file=ledger) from None


def pending_wal(run_dir: Path) -> int:
    """Bytes in the ledger's write-ahead log (0: none): writes that the hashed ledger does not hold."""
    wal = wal_of(Path(run_dir) / LEDGER)
    return wal.stat().st_size if wal.is_file() else 0


def record_manifest_hash(run_dir: Path) -> str:
    """The manifest's sha256, also written to audit/manifest.sha256."""
    sha, _, _ = hash_file(Path(run_dir) / MANIFEST)
    write_text(Path(run_dir) / MANIFEST_SHA, f"{sha}  manifest.json\n", inside=run_dir)
    return sha


def manifest_hash(run_dir: Path) -> str:
    sha, _, _ = hash_file(Path(run_dir) / MANIFEST)
    return sha


def recorded_manifest_hash(run_dir: Path) -> str | None:
    """The sha256 in audit/manifest.sha256, if the file is there (a careless edit's check; --expect binds)."""
    path = Path(run_dir) / MANIFEST_SHA
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8", errors="replace").split(" ", 1)[0].strip().lower()
