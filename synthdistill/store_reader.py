"""The harvest ledger opened read-only (the audit, the view, the filter and build): never written, never migrated."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from synthdistill import ledger_codec
from synthdistill.errors import DamagedFileError
from synthdistill.records import HarvestRecord

RESTART_HINT = "move it away, or run `synthdistill harvest --fresh` to start the harvest over (this deletes it)"


@dataclass(frozen=True)
class StoredEmbedding:
    """One answer's embedding as the ledger keeps it: `dims` numbers of `dtype`, little-endian, in `vector`."""

    request_key: str
    model: str
    dims: int
    dtype: str
    vector: bytes
    tokens: int
    attempts: int
    endpoint: str | None


def _counts(db: sqlite3.Connection) -> dict[str, int]:
    counts = {"done": 0, "failed": 0}
    for status, n in db.execute("SELECT status, COUNT(*) FROM requests GROUP BY status"):
        counts[status] = n
    return counts


class LedgerReadError(Exception):
    """SQLite could not read the ledger (damaged or foreign); the message is SQLite's."""


@contextmanager
def _reading() -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a damaged logprobs blob
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

    @functools.cached_property
    def _blob(self) -> str:
        """The logprobs blob column, or NULL in a ledger older than m005 (read-only: never migrated)."""
        columns = {row["name"] for row in self._dicts("PRAGMA table_info(requests)")}
        return "logprobs" if "logprobs" in columns else "NULL"

    def _joined(self, rows: list[dict]) -> list[dict]:
        """Rows with their `record` JSON whole again (the blob's fields put back), the blob dropped."""
        with _reading():
            for row in rows:
                if (blob := row.pop("blob")) is not None and row["record"]:
                    whole = ledger_codec.join_record(json.loads(row["record"]), blob)
                    row["record"] = json.dumps(whole, separators=(",", ":"))
        return rows

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
                   SUM(COALESCE(substr({self._blob}, 2, 1) >= x'{ledger_codec.TOP_LOGPROBS_BIT:02x}',
                                json_extract(record, '$.top_logprobs') IS NOT NULL)) AS with_logprobs
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
            sql = f"SELECT record, {self._blob} AS blob FROM requests WHERE rowid IN ({marks}) ORDER BY rowid"
            with _reading():
                found += [ledger_codec.join_record(json.loads(r["record"]), r["blob"]) for r in self._dicts(sql, chunk)]
        return found

    def embeddings(self, spec: str) -> dict[str, StoredEmbedding]:
        """The vectors stored for `spec`, by request key (none in a ledger from before m007)."""
        tables = self._dicts("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'embeddings'")
        if not tables:
            return {}
        rows = self._dicts(
            "SELECT request_key, model, dims, dtype, vector, tokens, attempts, endpoint FROM embeddings WHERE spec = ?",
            (spec,),
        )
        return {row["request_key"]: StoredEmbedding(**row) for row in rows}

    def done_keys(self) -> set[str]:
        """The request keys the ledger holds an answer for."""
        return {row["request_key"] for row in self._dicts("SELECT request_key FROM requests WHERE status = 'done'")}

    def done_among(self, keys: list[str]) -> set[str]:
        """Which of `keys` the ledger holds an answer for (a chunk of a plan: harvest_plan.py)."""
        return done_among(self._db, keys)

    def pack_usage(self) -> dict[str, dict]:
        """Per pack, what its stored answers took: {answers, tokens_in, tokens_out, latency_ms, record_bytes} (sums)."""
        rows = self._dicts(
            f"""
            SELECT pack, COUNT(*) AS answers,
                   COALESCE(SUM(json_extract(record, '$.usage.prompt_tokens')), 0) AS tokens_in,
                   COALESCE(SUM(json_extract(record, '$.usage.completion_tokens')), 0) AS tokens_out,
                   COALESCE(SUM(json_extract(record, '$.latency_ms')), 0) AS latency_ms,
                   COALESCE(SUM(LENGTH(CAST(record AS BLOB)) + COALESCE(LENGTH({self._blob}), 0)), 0) AS record_bytes
            FROM requests WHERE status = 'done' GROUP BY pack
            """
        )
        return {row.pop("pack"): row for row in rows}

    def runs(self) -> list[dict]:
        """Every harvest run, oldest first: {started_at, finished_at, summary}."""
        runs = self._dicts("SELECT started_at, finished_at, summary FROM harvest_runs ORDER BY id")
        return [{**run, "summary": json.loads(run["summary"]) if run["summary"] else None} for run in runs]

    def merges(self) -> list[dict]:
        """Every `synthdistill merge` into this ledger, oldest first: {merged_at, summary} (none before m007)."""
        with _reading():
            tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "merges" not in tables:
            return []
        rows = self._dicts("SELECT merged_at, summary FROM merges ORDER BY id")
        return [{"merged_at": row["merged_at"], **json.loads(row["summary"])} for row in rows]

    def find(self, ident: str, min_prefix: int) -> list[dict]:
        """Requests whose key or prompt id is `ident`, else (from `min_prefix` characters) begins with it."""
        select = f"SELECT {ROW_COLUMNS}, {self._blob} AS blob FROM requests"
        rows = self._dicts(f"{select} WHERE request_key = ? OR prompt_id = ? ORDER BY rowid", (ident, ident))
        if rows or len(ident) < min_prefix:
            return self._joined(rows)
        pattern = ident.replace("%", "").replace("_", "") + "%"
        return self._joined(
            self._dicts(f"{select} WHERE request_key LIKE ? OR prompt_id LIKE ? ORDER BY rowid", (pattern, pattern))
        )

    def rows(self) -> list[dict]:
        """Every request row, in insertion order, its `record` JSON whole (tests and tools that read it raw)."""
        return self._joined(self._dicts(f"SELECT {ROW_COLUMNS}, {self._blob} AS blob FROM requests ORDER BY rowid"))

    def answered_ranges(self, size: int) -> list[tuple[int, int]]:
        """(first, last) row ids of consecutive runs of `size` answered requests, in insertion order.

        The filter and build read the ledger a range at a time (`records_in`): only the
        boundaries are held, never every row id.
        """
        ranges: list[tuple[int, int]] = []
        first = last = None
        count = 0
        with _reading():
            for (rowid,) in self._db.execute("SELECT rowid FROM requests WHERE status = 'done' ORDER BY rowid"):
                first = rowid if count == 0 else first
                last, count = rowid, count + 1
                if count == size:
                    ranges.append((first, last))
                    count = 0
        if count:
            ranges.append((first, last))
        return ranges

    def records_in(self, first: int, last: int, arrays: bool = True) -> list[HarvestRecord]:
        """The answered records with row ids from `first` to `last`, in insertion order, validated.

        Without `arrays` the token arrays are not made Python lists: each record carries them
        as flat numpy arrays (`HarvestRecord.flat_arrays`), the filter stage's way when no step reads them.
        """
        sql = (
            f"SELECT request_key, record, {self._blob} AS blob FROM requests "
            "WHERE status = 'done' AND rowid BETWEEN ? AND ? ORDER BY rowid"
        )
        with _reading():
            rows = self._db.execute(sql, (first, last)).fetchall()
        records = []
        for key, payload, blob in rows:
            try:
                record = HarvestRecord.model_validate_json(payload)
                if blob is not None and not arrays:
                    record.with_flat_arrays(ledger_codec.decode_flat(blob))
                elif blob is not None:
                    record = record.model_copy(update=ledger_codec.decode(blob))
                records.append(record)
            except ValueError:  # pydantic's ValidationError included
                raise DamagedFileError(
                    f"the stored answer of request {key} is not a valid record; {RESTART_HINT}", file=self.path
                ) from None
        return records


def done_among(db, keys: list[str]) -> set[str]:
    """Which of `keys` have an answer in the ledger `db` (an sqlite3 connection); one query per 500 keys."""
    done: set[str] = set()
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        # by key alone: with `status = 'done'` in the WHERE, SQLite walks the status index (every answer) instead
        sql = f"SELECT request_key, status FROM requests WHERE request_key IN ({','.join('?' * len(part))})"
        done.update(key for key, status in db.execute(sql, part) if status == "done")
    return done
