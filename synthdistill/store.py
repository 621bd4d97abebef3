"""The crash-safe harvest ledger: one SQLite row per request, committed as each answer lands.

SQLite in WAL mode commits each answer atomically, so `kill -9` at any moment loses
at most the requests still in flight. A finished request is never overwritten or
sent again; a failed one keeps its last error and is retried by the next run.
The schema evolves through named, append-only migrations (store_schema.py). Every query of
the ledger lives in the store modules: this one writes, `LedgerReader` (store_reader.py) opens
it read-only for the audit, the view, filter and build (never writes, never migrates).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthdistill import ledger_codec
from synthdistill.errors import DamagedFileError
from synthdistill.records import HarvestRecord, utc_now
from synthdistill.safe_write import check_target
from synthdistill.store_reader import (
    RESTART_HINT,
    ROW_COLUMNS,
    LedgerReader,
    LedgerReadError,
    StoredEmbedding,
    _counts,
    checkpoint,
    done_among,
    wal_path,
)
from synthdistill.store_schema import MIGRATION_BATCH, MIGRATIONS

__all__ = [
    "MIGRATIONS",
    "RESTART_HINT",
    "ROW_COLUMNS",
    "HarvestStore",
    "LedgerReadError",
    "LedgerReader",
    "StoredEmbedding",
    "checkpoint",
    "check_ledger_file",
    "damage_named",
    "wal_path",
]


def _guarded(method):
    """Run a store method inside `HarvestStore._guard` (damage found by a read becomes a message)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._guard():
            return method(self, *args, **kwargs)

    return wrapper


SQLITE_MAGIC = b"SQLite format 3\x00"


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


def encoded_answer(record: HarvestRecord) -> tuple:
    """An answer as the ledger's row stores it (pure: bulk writers make these in worker processes)."""
    return (
        record.request_key,
        record.prompt_id,
        record.pack,
        record.sample_index,
        *ledger_codec.split_model(record),
        record.attempts,
    )


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
        row_steps = {"m005_compact_logprobs": self._compact_rows}
        for name, sql in MIGRATIONS:
            if name in applied:
                continue
            step = row_steps.get(name)
            schema = f"{name}:schema"  # marks a schema change whose rows are still being converted
            if schema not in applied:
                self._transaction(
                    *[(statement, ()) for statement in filter(str.strip, sql.split(";"))],
                    ("INSERT INTO migrations VALUES (?, ?)", (schema if step else name, utc_now())),
                )
            if step:
                step()
                self._transaction(
                    ("DELETE FROM migrations WHERE name = ?", (schema,)),
                    ("INSERT INTO migrations VALUES (?, ?)", (name, utc_now())),
                )

    def _transaction(self, *statements: tuple[str, tuple]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement, params in statements:
                self._db.execute(statement, params)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _compact_rows(self) -> None:
        """m005: move each old row's token ids and logprobs from its JSON into the blob, a batch per commit."""
        last = 0
        select = "SELECT rowid, record FROM requests WHERE rowid > ? AND record IS NOT NULL AND logprobs IS NULL"
        while rows := self._db.execute(f"{select} ORDER BY rowid LIMIT ?", (last, MIGRATION_BATCH)).fetchall():
            last = rows[-1][0]
            updates = []
            for rowid, payload in rows:
                record = json.loads(payload)
                if ledger_codec.needs_split(record):
                    rest, blob = ledger_codec.split_record(record)
                    updates.append((json.dumps(rest, ensure_ascii=False, separators=(",", ":")), blob, rowid))
            update = "UPDATE requests SET record = ?, logprobs = ? WHERE rowid = ? AND logprobs IS NULL"
            self._transaction(*[(update, values) for values in updates])

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
        return self.put_done_encoded([encoded_answer(record)]) == 1

    @_guarded
    def put_done_encoded(self, rows: list[tuple]) -> int:
        """Store answers already split by `encoded_answer` (made in other processes); how many were new."""
        now = utc_now()
        cursor = self._db.executemany(
            """
            INSERT INTO requests (request_key, prompt_id, pack, sample_index, status, record, logprobs, attempts, updated_at)
            VALUES (?, ?, ?, ?, 'done', ?, ?, ?, ?)
            ON CONFLICT (request_key) DO UPDATE SET
                status = 'done', record = excluded.record, logprobs = excluded.logprobs, error_kind = NULL, error = NULL,
                attempts = requests.attempts + excluded.attempts, updated_at = excluded.updated_at
            WHERE requests.status != 'done'
            """,
            [(*row, now) for row in rows],
        )
        return cursor.rowcount

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

    def put_batch(
        self, batch_id: str, input_file_id: str, request_keys: list[str], status: str, intent_id: str | None = None
    ) -> None:
        """Remember a submitted Batch API job (before polling it: a crash then resumes it, never resubmits).

        With `intent_id`, the intent recorded before the submission is marked submitted in the same transaction.
        """
        with self.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO batches (batch_id, input_file_id, request_keys, status, submitted_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (batch_id, input_file_id, json.dumps(request_keys), status, utc_now()),
            )
            if intent_id is not None:
                self._db.execute(
                    "UPDATE batch_intents SET status = 'submitted', batch_id = ?, input_file_id = ? WHERE intent_id = ?",
                    (batch_id, input_file_id, intent_id),
                )

    def put_batch_intent(self, intent_id: str, request_keys: list[str]) -> None:
        """Record a batch about to be submitted (status `submitting`), before its file is uploaded."""
        self._db.execute(
            "INSERT INTO batch_intents (intent_id, request_keys, status, created_at) VALUES (?, ?, 'submitting', ?)",
            (intent_id, json.dumps(request_keys), utc_now()),
        )

    def set_intent_file(self, intent_id: str, input_file_id: str) -> None:
        """The uploaded input file of an intent (its batch not created yet)."""
        self._db.execute("UPDATE batch_intents SET input_file_id = ? WHERE intent_id = ?", (input_file_id, intent_id))

    def drop_batch_intent(self, intent_id: str) -> None:
        """Forget an intent that never reached the provider (its requests go into a new batch)."""
        self._db.execute("DELETE FROM batch_intents WHERE intent_id = ? AND status = 'submitting'", (intent_id,))

    def open_intents(self) -> list[dict]:
        """Intents whose batch id the ledger lacks, oldest first: {intent_id, request_keys, input_file_id}."""
        rows = self._db.execute(
            "SELECT intent_id, request_keys, input_file_id FROM batch_intents WHERE status = 'submitting' ORDER BY rowid"
        )
        return [{"intent_id": i, "request_keys": json.loads(k), "input_file_id": f} for i, k, f in rows]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction around the block (a bulk copy commits once); nested blocks join the outer one."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @_guarded
    def put_failed_if_absent(
        self, request_key: str, prompt_id: str, pack: str, sample_index: int, failure: dict
    ) -> bool:
        """Copy a failure from another ledger unless this one knows the request (answered or failed)."""
        cursor = self._db.execute(
            """
            INSERT INTO requests (request_key, prompt_id, pack, sample_index, status, error_kind, error, attempts, updated_at)
            VALUES (?, ?, ?, ?, 'failed', ?, ?, ?, ?) ON CONFLICT (request_key) DO NOTHING
            """,
            (
                request_key,
                prompt_id,
                pack,
                sample_index,
                failure["error_kind"],
                failure["error"],
                failure["attempts"],
                utc_now(),
            ),
        )
        return cursor.rowcount == 1

    @_guarded
    def record(self, request_key: str) -> HarvestRecord | None:
        """The stored answer of one request, or None."""
        row = self._db.execute(
            "SELECT record, logprobs FROM requests WHERE request_key = ? AND status = 'done'", (request_key,)
        ).fetchone()
        return self._record(request_key, row[0], row[1]) if row else None

    @_guarded
    def put_merge(self, summary: dict) -> None:
        """Record one `synthdistill merge` into this ledger (its inputs, counts and conflicts)."""
        self._db.execute("INSERT INTO merges (merged_at, summary) VALUES (?, ?)", (utc_now(), json.dumps(summary)))

    @_guarded
    def merged_shards(self) -> set[str]:
        """The shards (i/N) earlier merges brought into this ledger."""
        shards: set[str] = set()
        for (summary,) in self._db.execute("SELECT summary FROM merges"):
            shards.update(json.loads(summary).get("shards") or [])
        return shards

    @_guarded
    def last_run_summary(self) -> dict | None:
        """The summary of the latest finished harvest run, or None."""
        row = self._db.execute(
            "SELECT summary FROM harvest_runs WHERE summary IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return json.loads(row[0]) if row else None

    @_guarded
    def open_batch_count(self) -> int:
        """Batches submitted and not collected, and intents not yet submitted (a shard still waiting on its teacher)."""
        row = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM batches WHERE collected_at IS NULL) + "
            "(SELECT COUNT(*) FROM batch_intents WHERE status = 'submitting')"
        ).fetchone()
        return int(row[0])

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

    @_guarded
    def done_among(self, keys: list[str]) -> set[str]:
        """Which of `keys` the ledger holds an answer for (a chunk of a plan: harvest_plan.py)."""
        return done_among(self._db, keys)

    def records(self, keys: set[str] | None = None) -> Iterator[HarvestRecord]:
        """Answered records in the order they were first requested (insertion order)."""
        with self._guard():
            sql = "SELECT request_key, record, logprobs FROM requests WHERE status = 'done' ORDER BY rowid"
            for key, payload, blob in self._db.execute(sql):
                if keys is None or key in keys:
                    yield self._record(key, payload, blob)

    def _record(self, key: str, payload: str, blob: bytes | None) -> HarvestRecord:
        try:
            record = HarvestRecord.model_validate_json(payload)
            return record if blob is None else record.model_copy(update=ledger_codec.decode(blob))
        except ValueError:  # pydantic's ValidationError and a damaged blob included
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

    # -- embeddings (m007) -----------------------------------------------------
    @_guarded
    def put_embeddings(self, spec: str, rows: list[StoredEmbedding]) -> int:
        """Store the vectors of one answered embedding request at once (one transaction); returns how many were new.

        A vector already stored for (request_key, spec) is kept as it is; a stored failure is cleared.
        """
        now = utc_now()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            added = 0
            for row in rows:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row.request_key,
                        spec,
                        row.model,
                        row.dims,
                        row.dtype,
                        row.vector,
                        row.tokens,
                        row.attempts,
                        row.endpoint,
                        now,
                    ),
                )
                added += cursor.rowcount
                self._db.execute(
                    "DELETE FROM embedding_failures WHERE request_key = ? AND spec = ?", (row.request_key, spec)
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return added

    @_guarded
    def embeddings_by_spec(self) -> dict[str, list[StoredEmbedding]]:
        """Every stored vector, grouped by embedding spec, in the order they were stored (merge copies them)."""
        grouped: dict[str, list[StoredEmbedding]] = {}
        sql = "SELECT spec, request_key, model, dims, dtype, vector, tokens, attempts, endpoint FROM embeddings"
        for spec, *fields in self._db.execute(sql + " ORDER BY rowid"):
            grouped.setdefault(spec, []).append(StoredEmbedding(*fields))
        return grouped

    @_guarded
    def put_embedding_failures(self, spec: str, keys: list[str], kind: str, error: str, attempts: int) -> None:
        """Record answers whose embedding request gave up (the next harvest asks again)."""
        now = utc_now()
        self._db.executemany(
            """
            INSERT INTO embedding_failures VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (request_key, spec) DO UPDATE SET error_kind = excluded.error_kind, error = excluded.error,
                attempts = embedding_failures.attempts + excluded.attempts, updated_at = excluded.updated_at
            """,
            [(key, spec, kind, error, attempts, now) for key in keys],
        )

    @_guarded
    def embedded_keys(self, spec: str) -> set[str]:
        """Request keys whose answer has a vector stored for `spec`."""
        return {row[0] for row in self._db.execute("SELECT request_key FROM embeddings WHERE spec = ?", (spec,))}

    @_guarded
    def embedding_dims(self, spec: str) -> int | None:
        """The length of the vectors stored for `spec` (None before the first)."""
        row = self._db.execute("SELECT dims FROM embeddings WHERE spec = ? LIMIT 1", (spec,)).fetchone()
        return row[0] if row else None

    @_guarded
    def embedding_tokens(self) -> int:
        """Input tokens of every stored embedding: what the embeddings have cost so far (priced by the caller)."""
        return int(self._db.execute("SELECT COALESCE(SUM(tokens), 0) FROM embeddings").fetchone()[0])
