"""The crash-safe harvest ledger: one SQLite row per request, committed as each answer lands.

SQLite in WAL mode commits each answer atomically, so `kill -9` at any moment loses
at most the requests still in flight. A finished request is never overwritten or
sent again; a failed one keeps its last error and is retried by the next run.
The schema evolves through named, append-only migrations.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from synthdistill.records import HarvestRecord

MIGRATIONS: list[tuple[str, str]] = [
    (
        "m001_initial",
        """
        CREATE TABLE requests (
            request_key  TEXT PRIMARY KEY,
            prompt_id    TEXT NOT NULL,
            pack         TEXT NOT NULL,
            sample_index INTEGER NOT NULL,
            status       TEXT NOT NULL CHECK (status IN ('done', 'failed')),
            record       TEXT,
            error_kind   TEXT,
            error        TEXT,
            attempts     INTEGER NOT NULL,
            updated_at   TEXT NOT NULL
        );
        CREATE INDEX requests_status ON requests(status);
        CREATE TABLE harvest_runs (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at  TEXT NOT NULL,
            finished_at TEXT,
            summary     TEXT
        );
        """,
    ),
    (
        "m002_batches",
        """
        CREATE TABLE batches (
            batch_id      TEXT PRIMARY KEY,
            input_file_id TEXT NOT NULL,
            request_keys  TEXT NOT NULL,
            status        TEXT NOT NULL,
            submitted_at  TEXT NOT NULL,
            collected_at  TEXT
        );
        """,
    ),
    (
        # Models a server answered as that the gate refused: their answers never reach a dataset.
        "m003_refused_models",
        """
        CREATE TABLE refused_models (
            model       TEXT PRIMARY KEY,
            reason      TEXT NOT NULL,
            refused_at  TEXT NOT NULL
        );
        """,
    ),
]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class HarvestStore:
    """The ledger at `<run>/harvest/ledger.sqlite`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (not a power cut): what kill -9 needs.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._migrate()

    def _migrate(self) -> None:
        self._db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        applied = {row[0] for row in self._db.execute("SELECT name FROM migrations")}
        for name, sql in MIGRATIONS:
            if name in applied:
                continue
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, sql.split(";")):
                    self._db.execute(statement)
                self._db.execute("INSERT INTO migrations VALUES (?, ?)", (name, utc_now()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "HarvestStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------
    def put_done(self, record: HarvestRecord) -> bool:
        """Store an answer; False (and nothing written) if the request was already done."""
        cursor = self._db.execute(
            """
            INSERT INTO requests (request_key, prompt_id, pack, sample_index, status, record, attempts, updated_at)
            VALUES (?, ?, ?, ?, 'done', ?, ?, ?)
            ON CONFLICT (request_key) DO UPDATE SET
                status = 'done', record = excluded.record, error_kind = NULL, error = NULL,
                attempts = requests.attempts + excluded.attempts, updated_at = excluded.updated_at
            WHERE requests.status != 'done'
            """,
            (
                record.request_key,
                record.prompt_id,
                record.pack,
                record.sample_index,
                record.model_dump_json(),
                record.attempts,
                utc_now(),
            ),
        )
        return cursor.rowcount == 1

    def put_failed(self, request_key: str, prompt_id: str, pack: str, sample_index: int, kind: str, error: str, attempts: int) -> None:
        """Record a request whose retries ran out, with its last error (never over an answer)."""
        self._db.execute(
            """
            INSERT INTO requests (request_key, prompt_id, pack, sample_index, status, error_kind, error, attempts, updated_at)
            VALUES (?, ?, ?, ?, 'failed', ?, ?, ?, ?)
            ON CONFLICT (request_key) DO UPDATE SET
                status = 'failed', error_kind = excluded.error_kind, error = excluded.error,
                attempts = requests.attempts + excluded.attempts, updated_at = excluded.updated_at
            WHERE requests.status != 'done'
            """,
            (request_key, prompt_id, pack, sample_index, kind, error, attempts, utc_now()),
        )

    def refuse_model(self, model: str, reason: str) -> int:
        """Record that the gate refused answers from `model`; returns how many stored answers came from it."""
        self._db.execute(
            "INSERT INTO refused_models VALUES (?, ?, ?) ON CONFLICT (model) DO UPDATE SET reason = excluded.reason",
            (model, reason, utc_now()),
        )
        row = self._db.execute(
            "SELECT COUNT(*) FROM requests WHERE status = 'done' AND json_extract(record, '$.model_answered') = ?", (model,)
        ).fetchone()
        return int(row[0])

    def refused_models(self) -> dict[str, str]:
        """Answering models the gate refused, with the reason."""
        return dict(self._db.execute("SELECT model, reason FROM refused_models ORDER BY model"))

    def start_run(self) -> int:
        return self._db.execute("INSERT INTO harvest_runs (started_at) VALUES (?)", (utc_now(),)).lastrowid

    def finish_run(self, run_id: int, summary: dict) -> None:
        self._db.execute(
            "UPDATE harvest_runs SET finished_at = ?, summary = ? WHERE id = ?", (utc_now(), json.dumps(summary), run_id)
        )

    def put_batch(self, batch_id: str, input_file_id: str, request_keys: list[str], status: str) -> None:
        """Remember a submitted Batch API job (before polling it: a crash then resumes it, never resubmits)."""
        self._db.execute(
            "INSERT INTO batches (batch_id, input_file_id, request_keys, status, submitted_at) VALUES (?, ?, ?, ?, ?)",
            (batch_id, input_file_id, json.dumps(request_keys), status, utc_now()),
        )

    def set_batch_status(self, batch_id: str, status: str, collected: bool = False) -> None:
        """The batch's latest remote status; `collected` once its answers and errors are stored."""
        self._db.execute(
            "UPDATE batches SET status = ?, collected_at = CASE WHEN ? THEN ? ELSE collected_at END WHERE batch_id = ?",
            (status, collected, utc_now(), batch_id),
        )

    # -- reads -----------------------------------------------------------------
    def open_batches(self) -> list[dict]:
        """Submitted batches not yet collected, oldest first: {batch_id, input_file_id, request_keys, status}."""
        rows = self._db.execute(
            "SELECT batch_id, input_file_id, request_keys, status FROM batches WHERE collected_at IS NULL ORDER BY rowid"
        )
        return [{"batch_id": b, "input_file_id": f, "request_keys": json.loads(k), "status": s} for b, f, k, s in rows]

    def done_keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT request_key FROM requests WHERE status = 'done'")}

    def records(self, keys: set[str] | None = None) -> Iterator[HarvestRecord]:
        """Answered records in the order they were first requested (insertion order)."""
        for key, payload in self._db.execute("SELECT request_key, record FROM requests WHERE status = 'done' ORDER BY rowid"):
            if keys is None or key in keys:
                yield HarvestRecord.model_validate_json(payload)

    def failures(self) -> list[dict]:
        rows = self._db.execute(
            "SELECT request_key, prompt_id, pack, sample_index, error_kind, error, attempts FROM requests WHERE status = 'failed'"
        )
        names = ["request_key", "prompt_id", "pack", "sample_index", "error_kind", "error", "attempts"]
        return [dict(zip(names, row)) for row in rows]

    def usage_totals(self) -> tuple[int, int]:
        """(prompt tokens, completion tokens) of every stored answer: what the ledger has cost so far."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(json_extract(record, '$.usage.prompt_tokens')), 0), "
            "COALESCE(SUM(json_extract(record, '$.usage.completion_tokens')), 0) FROM requests WHERE status = 'done'"
        ).fetchone()
        return int(row[0]), int(row[1])

    def counts(self) -> dict[str, int]:
        counts = {"done": 0, "failed": 0}
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM requests GROUP BY status"):
            counts[status] = n
        return counts
