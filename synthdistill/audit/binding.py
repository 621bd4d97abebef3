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
- Optionally, with a secret in `SYNTHDISTILL_AUDIT_KEY`, the audit seals the manifest
  with HMAC-SHA256 (`audit/manifest.hmac`), and `verify` (with the same variable set)
  fails when the seal is missing or does not match. A forger without the key cannot
  make a matching seal. It is a shared-secret seal (stdlib `hmac`), not a public-key
  signature: whoever verifies holds the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from synthdistill.audit.hashing import hash_file
from synthdistill.errors import DamagedFileError, InputError
from synthdistill.run_layout import RunLayout
from synthdistill.safe_write import write_text
from synthdistill.store import LedgerReadError, checkpoint, wal_path

SEAL_KEY_ENV = "SYNTHDISTILL_AUDIT_KEY"
MIN_KEY_CHARS = 16


def checkpoint_ledger(run_dir: Path) -> None:
    """Fold a pending write-ahead log into the ledger (and remove it) so the ledger's hash covers it."""
    ledger = RunLayout(run_dir).ledger
    if not ledger.is_file() or not wal_path(ledger).exists():
        return
    try:
        checkpoint(ledger)
    except LedgerReadError as exc:
        raise DamagedFileError(
            f"the harvest ledger is damaged ({exc}); the audit cannot hash it", file=ledger
        ) from None


def pending_wal(run_dir: Path) -> int:
    """Bytes in the ledger's write-ahead log (0: none): writes that the hashed ledger does not hold."""
    wal = wal_path(RunLayout(run_dir).ledger)
    return wal.stat().st_size if wal.is_file() else 0


def record_manifest_hash(run_dir: Path) -> str:
    """The manifest's sha256, also written to audit/manifest.sha256."""
    layout = RunLayout(run_dir)
    sha, _, _ = hash_file(layout.manifest)
    write_text(layout.manifest_sha256, f"{sha}  {layout.manifest.name}\n", inside=run_dir)
    return sha


def manifest_hash(run_dir: Path) -> str:
    sha, _, _ = hash_file(RunLayout(run_dir).manifest)
    return sha


def recorded_manifest_hash(run_dir: Path) -> str | None:
    """The sha256 in audit/manifest.sha256, if the file is there (a careless edit's check; --expect binds)."""
    path = RunLayout(run_dir).manifest_sha256
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8", errors="replace").split(" ", 1)[0].strip().lower()


def seal_key() -> bytes | None:
    """The sealing key from SYNTHDISTILL_AUDIT_KEY, or None when it is not set."""
    value = os.environ.get(SEAL_KEY_ENV)
    if not value:
        return None
    if len(value) < MIN_KEY_CHARS:
        raise InputError(f"{SEAL_KEY_ENV} is shorter than {MIN_KEY_CHARS} characters; use a long random key")
    return value.encode("utf-8")


def _seal(key: bytes, run_dir: Path) -> str:
    return hmac.new(key, RunLayout(run_dir).manifest.read_bytes(), hashlib.sha256).hexdigest()


def write_seal(run_dir: Path) -> bool:
    """Seal the manifest when a key is set (audit/manifest.hmac); whether it was sealed."""
    key = seal_key()
    if key is None:
        return False
    layout = RunLayout(run_dir)
    write_text(layout.manifest_seal, f"hmac-sha256 {_seal(key, run_dir)}  {layout.manifest.name}\n", inside=run_dir)
    return True


def seal_problem(run_dir: Path) -> tuple[str, str, str] | None:
    """(kind, path, detail) when a key is set and the seal is missing or wrong; None otherwise."""
    key = seal_key()
    if key is None:
        return None
    layout = RunLayout(run_dir)
    path = layout.manifest_seal
    if not path.is_file():
        return ("missing", layout.relative(path), f"{SEAL_KEY_ENV} is set but the manifest was never sealed")
    recorded = path.read_text(encoding="utf-8", errors="replace").split()
    if len(recorded) < 2 or not hmac.compare_digest(recorded[1], _seal(key, run_dir)):
        return (
            "changed",
            layout.relative(layout.manifest),
            f"its seal does not match {SEAL_KEY_ENV}: the manifest was rewritten, or sealed with another key",
        )
    return None
