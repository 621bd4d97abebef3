"""The crash-safe harvest ledger: one SQLite row per request, committed as each answer lands.

SQLite in WAL mode commits each answer atomically, so `kill -9` at any moment loses
at most the requests still in flight. A finished request is never overwritten or
sent again; a failed one keeps its last error and is retried by the next run.
The schema evolves through named, append-only migrations. Every query of the ledger
lives here: `LedgerReader` opens it read-only for the audit (never writes, never migrates).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from synthdistill.errors import DamagedFileError
from synthdistill.records import HarvestRecord, utc_now
from synthdistill.safe_write import check_target

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
    (
        # Structured answers that were not valid for their schema, one row per invalid answer
        # (harvest_structured.py asks again); the request itself stays keyed in `requests`.
        "m004_schema_failures",
        """
        CREATE TABLE schema_failures (
            request_key TEXT NOT NULL,
            attempt     INTEGER NOT NULL,
            seed        INTEGER,
            reason      TEXT NOT NULL,
            answer      TEXT NOT NULL,
            failed_at   TEXT NOT NULL,
            PRIMARY KEY (request_key, attempt)
        );
        """,
    ),
]


def _guarded(method):
    """Run a store method inside `HarvestStore._guard` (damage found by a read becomes a message)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._guard():
            return method(self, *args, **kwargs)

    return wrapper


SQLITE_MAGIC = b"SQLite format 3\x00"
RESTART_HINT = "move it away, or run `synthdistill harvest --fresh` to start the harvest over (this deletes it)"


def check_ledger_file(path: Path) -> None:
    """Refuse an existing ledger that is empty, not SQLite, or shorter than its header says (truncated)."""
    size = path.stat().st_size
    if size == 0:
        raise DamagedFileError(
            f"the harvest ledger is empty (0 bytes), so it holds no answers; {RESTART_HINT}", file=path
        )
    with path.open("rb") as handle:
        header = handle.read(100)
    if not header.startswith(SQLITE_MAGIC) or len(header) < 100:
        raise DamagedFileError(f"not a synthdistill harvest ledger (not an SQLite database); {RESTART_HINT}", file=path)
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count in the header is valid only when its change counter matches (SQLite >= 3.7.0 writes both).
    if header[24:28] == header[92:96] and pages and size < pages * page_size:
        raise DamagedFileError(
            f"the harvest ledger is truncated ({size} bytes where its header says {pages * page_size}); {RESTART_HINT}",
            file=path,
        )


@contextmanager
def damage_named(path: Path, what: str, hint: str) -> Iterator[None]:
    """SQLite's "file is not a database" / "disk image is malformed" become one message naming the file."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise
        raise DamagedFileError(f"{what} is damaged ({exc}); {hint}", file=path) from None


class HarvestStore:
    """The ledger at `<run>/harvest/ledger.sqlite`.

    An existing file must be a ledger this tool wrote: an empty (0-byte), truncated,
    corrupt or foreign file is refused with `DamagedFileError` rather than silently
    rebuilt (which would send and pay for every request again); `harvest --fresh`
    deletes it on purpose.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_target(self.path)  # a symlinked ledger would write wherever it points
        existed = self.path.exists()
        if existed:
            check_ledger_file(self.path)
        with self._guard():
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if existed:
                self._check_ours()
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (not a power cut): what kill -9 needs.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._migrate()

    def _guard(self):
        return damage_named(self.path, "the harvest ledger", RESTART_HINT)

    def _check_ours(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "migrations" not in tables or "requests" not in tables:
            raise DamagedFileError(
                f"not a synthdistill harvest ledger (it has no requests/migrations tables); {RESTART_HINT}",
                file=self.path,
            )

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

    def __enter__(self) -> HarvestStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------
    @_guarded
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

    @_guarded
    def put_failed(
        self, request_key: str, prompt_id: str, pack: str, sample_index: int, kind: str, error: str, attempts: int
    ) -> None:
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

    @_guarded
    def put_schema_failure(self, request_key: str, attempt: int, seed: int | None, reason: str, answer: str) -> None:
        """Record a structured answer that was not valid, with why (a re-run's tries replace a killed run's)."""
        self._db.execute(
            "INSERT OR REPLACE INTO schema_failures VALUES (?, ?, ?, ?, ?, ?)",
            (request_key, attempt, seed, reason, answer, utc_now()),
        )

    @_guarded
    def schema_failures(self) -> list[dict]:
        """Every invalid structured answer recorded, oldest first."""
        rows = self._db.execute(
            "SELECT request_key, attempt, seed, reason, answer FROM schema_failures ORDER BY failed_at, attempt"
        ).fetchall()
        keys = ("request_key", "attempt", "seed", "reason", "answer")
        return [dict(zip(keys, row)) for row in rows]

    @_guarded
    def refuse_model(self, model: str, reason: str) -> int:
        """Record that the gate refused answers from `model`; returns how many stored answers came from it."""
        self._db.execute(
            "INSERT INTO refused_models VALUES (?, ?, ?) ON CONFLICT (model) DO UPDATE SET reason = excluded.reason",
            (model, reason, utc_now()),
        )
        row = self._db.execute(
            "SELECT COUNT(*) FROM requests WHERE status = 'done' AND json_extract(record, '$.model_answered') = ?",
            (model,),
        ).fetchone()
        return int(row[0])

    @_guarded
    def refused_models(self) -> dict[str, str]:
        """Answering models the gate refused, with the reason."""
        return dict(self._db.execute("SELECT model, reason FROM refused_models ORDER BY model"))

    @_guarded
    def start_run(self) -> int:
        return self._db.execute("INSERT INTO harvest_runs (started_at) VALUES (?)", (utc_now(),)).lastrowid

    def finish_run(self, run_id: int, summary: dict) -> None:
        self._db.execute(
            "UPDATE harvest_runs SET finished_at = ?, summary = ? WHERE id = ?",
            (utc_now(), json.dumps(summary), run_id),
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

    @_guarded
    def done_keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT request_key FROM requests WHERE status = 'done'")}

    def records(self, keys: set[str] | None = None) -> Iterator[HarvestRecord]:
        """Answered records in the order they were first requested (insertion order)."""
        with self._guard():
            rows = self._db.execute("SELECT request_key, record FROM requests WHERE status = 'done' ORDER BY rowid")
            for key, payload in rows:
                if keys is None or key in keys:
                    yield self._record(key, payload)

    def _record(self, key: str, payload: str) -> HarvestRecord:
        try:
            return HarvestRecord.model_validate_json(payload)
        except ValueError:  # pydantic's ValidationError included
            raise DamagedFileError(
                f"the stored answer of request {key} is not a valid record; {RESTART_HINT}", file=self.path
            ) from None

    @_guarded
    def failures(self) -> list[dict]:
        rows = self._db.execute(
            "SELECT request_key, prompt_id, pack, sample_index, error_kind, error, attempts FROM requests WHERE status = 'failed'"
        )
        names = ["request_key", "prompt_id", "pack", "sample_index", "error_kind", "error", "attempts"]
        return [dict(zip(names, row)) for row in rows]

    @_guarded
    def usage_totals(self) -> tuple[int, int]:
        """(prompt tokens, completion tokens) of every stored answer: what the ledger has cost so far."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(json_extract(record, '$.usage.prompt_tokens')), 0), "
            "COALESCE(SUM(json_extract(record, '$.usage.completion_tokens')), 0) FROM requests WHERE status = 'done'"
        ).fetchone()
        return int(row[0]), int(row[1])

    @_guarded
    def counts(self) -> dict[str, int]:
        return _counts(self._db)


def _counts(db: sqlite3.Connection) -> dict[str, int]:
    counts = {"done": 0, "failed": 0}
    for status, n in db.execute("SELECT status, COUNT(*) FROM requests GROUP BY status"):
        counts[status] = n
    return counts


# -- read-only access (the audit) ----------------------------------------------


class LedgerReadError(Exception):
    """SQLite could not read the ledger (damaged or foreign); the message is SQLite's."""


@contextmanager
def _reading() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise LedgerReadError(str(exc)) from exc


def wal_path(ledger: Path) -> Path:
    """The ledger's write-ahead log (SQLite keeps recent commits there until a checkpoint)."""
    return ledger.with_name(ledger.name + "-wal")


def checkpoint(ledger: Path) -> None:
    """Fold a pending write-ahead log into the ledger (no row changes); closing the last connection deletes the log."""
    with _reading(), closing(sqlite3.connect(ledger, timeout=10)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


ROW_COLUMNS = "request_key, prompt_id, pack, sample_index, status, record, error_kind, error, attempts, updated_at"


class LedgerReader:
    """The ledger opened read-only: never written to, never migrated. Reads raise LedgerReadError.

    With no write-ahead log pending it is opened `immutable`: SQLite then creates no -wal/-shm
    files beside it. A pending log (a harvest running or killed) must be read too.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        wal = wal_path(self.path)
        mode = "mode=ro" if wal.exists() and wal.stat().st_size > 0 else "mode=ro&immutable=1"
        self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?{mode}", uri=True)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _dicts(self, sql: str, params: tuple = ()) -> list[dict]:
        with _reading():
            cursor = self._db.execute(sql, params)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def counts(self) -> dict[str, int]:
        with _reading():
            return _counts(self._db)

    def failures_by_kind(self) -> dict[str | None, int]:
        sql = "SELECT error_kind, COUNT(*) AS n FROM requests WHERE status = 'failed' GROUP BY error_kind"
        return {row["error_kind"]: row["n"] for row in self._dicts(sql)}

    def answer_groups(self) -> list[dict]:
        """Answers grouped by teacher, endpoint, pack and decision, summed in SQL: records are never parsed here."""
        fields = (
            "model_requested",
            "model_answered",
            "backend",
            "endpoint",
            "system_fingerprint",
            "pack",
            "pack_version",
            "policy_id",
            "decision",
        )
        keys = ", ".join(f"json_extract(record, '$.{name}') AS {name}" for name in fields)
        return self._dicts(
            f"""
            SELECT {keys}, COUNT(*) AS answers,
                   MIN(json_extract(record, '$.harvested_at')) AS first_at,
                   MAX(json_extract(record, '$.harvested_at')) AS last_at,
                   SUM(json_extract(record, '$.usage.prompt_tokens')) AS tokens_in,
                   SUM(json_extract(record, '$.usage.completion_tokens')) AS tokens_out,
                   SUM(json_extract(record, '$.top_logprobs') IS NOT NULL) AS with_logprobs
            FROM requests WHERE status = 'done' GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
            """
        )

    def pack_counts(self) -> list[dict]:
        """Per pack: distinct prompts, requests, answered and failed."""
        return self._dicts(
            """
            SELECT pack, COUNT(DISTINCT prompt_id) AS prompts, COUNT(*) AS requests,
                   SUM(status = 'done') AS answered, SUM(status = 'failed') AS failed
            FROM requests GROUP BY pack ORDER BY pack
            """
        )

    def answered_rowids(self) -> list[int]:
        """The row ids of every answered request, in insertion order (to sample from)."""
        return [row["rowid"] for row in self._dicts("SELECT rowid FROM requests WHERE status = 'done' ORDER BY rowid")]

    def record_payloads(self, rowids: list[int]) -> list[dict]:
        """The stored records (parsed JSON, not validated) of the given rows, in row order."""
        found: list[dict] = []
        for start in range(0, len(rowids), 500):
            chunk = rowids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self._dicts(f"SELECT record FROM requests WHERE rowid IN ({marks}) ORDER BY rowid", tuple(chunk))
            found += [json.loads(row["record"]) for row in rows]
        return found

    def done_keys(self) -> set[str]:
        """The request keys the ledger holds an answer for."""
        return {row["request_key"] for row in self._dicts("SELECT request_key FROM requests WHERE status = 'done'")}

    def pack_usage(self) -> dict[str, dict]:
        """Per pack, what its stored answers took: {answers, tokens_in, tokens_out, latency_ms, record_bytes} (sums)."""
        rows = self._dicts(
            """
            SELECT pack, COUNT(*) AS answers,
                   COALESCE(SUM(json_extract(record, '$.usage.prompt_tokens')), 0) AS tokens_in,
                   COALESCE(SUM(json_extract(record, '$.usage.completion_tokens')), 0) AS tokens_out,
                   COALESCE(SUM(json_extract(record, '$.latency_ms')), 0) AS latency_ms,
                   COALESCE(SUM(LENGTH(CAST(record AS BLOB))), 0) AS record_bytes
            FROM requests WHERE status = 'done' GROUP BY pack
            """
        )
        return {row.pop("pack"): row for row in rows}

    def runs(self) -> list[dict]:
        """Every harvest run, oldest first: {started_at, finished_at, summary}."""
        runs = self._dicts("SELECT started_at, finished_at, summary FROM harvest_runs ORDER BY id")
        return [{**run, "summary": json.loads(run["summary"]) if run["summary"] else None} for run in runs]

    def find(self, ident: str, min_prefix: int) -> list[dict]:
        """Requests whose key or prompt id is `ident`, else (from `min_prefix` characters) begins with it."""
        select = f"SELECT {ROW_COLUMNS} FROM requests"
        rows = self._dicts(f"{select} WHERE request_key = ? OR prompt_id = ? ORDER BY rowid", (ident, ident))
        if rows or len(ident) < min_prefix:
            return rows
        pattern = ident.replace("%", "").replace("_", "") + "%"
        return self._dicts(f"{select} WHERE request_key LIKE ? OR prompt_id LIKE ? ORDER BY rowid", (pattern, pattern))
