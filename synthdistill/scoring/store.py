"""The scores ledger: one SQLite row per scored sample, committed as each score lands.

Keyed by `score_key` (student checkpoint, prompt, sample, text): `kill -9` loses at most the
requests in flight, and a re-run sends only what the ledger lacks. A stored score is never
overwritten; a failure keeps its last error until a later run scores the sample.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from synthdistill.errors import DamagedFileError
from synthdistill.records import utc_now
from synthdistill.safe_write import check_target
from synthdistill.scoring.records import ScoredSample
from synthdistill.store import damage_named

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    score_key     TEXT PRIMARY KEY,
    checkpoint    TEXT NOT NULL,
    prompt_id     TEXT NOT NULL,
    sample_index  INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    record        TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    error_kind    TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scoring_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    summary     TEXT
)
"""
HINT = "move it away to score every sample again"


class ScoreStore:
    """The ledger at `RunLayout.scores`; an existing file that is not one is refused, never rebuilt."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_target(self.path)
        with self._guard():
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # survives kill -9 in WAL mode
            self._db.execute("PRAGMA busy_timeout=10000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DamagedFileError(f"the scores ledger is from a newer synthdistill; {HINT}", file=self.path)
            for statement in SCHEMA.split(";"):
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _guard(self):
        return damage_named(self.path, "the scores ledger", HINT)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ScoreStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def put_done(self, scored: ScoredSample) -> bool:
        """Store a score; False (nothing written) when the sample was already scored."""
        with self._guard():
            cursor = self._db.execute(
                "INSERT INTO scores (score_key, checkpoint, prompt_id, sample_index, status, record, prompt_tokens,"
                " output_tokens, attempts, updated_at) VALUES (?, ?, ?, ?, 'done', ?, ?, ?, ?, ?)"
                " ON CONFLICT(score_key) DO UPDATE SET status = 'done', record = excluded.record,"
                " prompt_tokens = excluded.prompt_tokens, output_tokens = excluded.output_tokens,"
                " error_kind = NULL, error = NULL, attempts = scores.attempts + excluded.attempts,"
                " updated_at = excluded.updated_at WHERE scores.status = 'failed'",
                (
                    scored.score_key,
                    scored.checkpoint,
                    scored.prompt_id,
                    scored.sample_index,
                    scored.model_dump_json(),
                    scored.usage.prompt_tokens,
                    scored.usage.completion_tokens,
                    scored.attempts,
                    utc_now(),
                ),
            )
            return cursor.rowcount > 0

    def put_failed(
        self, key: str, checkpoint: str, prompt_id: str, sample_index: int, kind: str, error: str, attempts: int
    ) -> None:
        """Record a sample not scored (its last error); a stored score is never replaced."""
        with self._guard():
            self._db.execute(
                "INSERT INTO scores (score_key, checkpoint, prompt_id, sample_index, status, error_kind, error,"
                " attempts, updated_at) VALUES (?, ?, ?, ?, 'failed', ?, ?, ?, ?)"
                " ON CONFLICT(score_key) DO UPDATE SET error_kind = excluded.error_kind, error = excluded.error,"
                " attempts = scores.attempts + excluded.attempts, updated_at = excluded.updated_at"
                " WHERE scores.status = 'failed'",
                (key, checkpoint, prompt_id, sample_index, kind, error, attempts, utc_now()),
            )

    def scored(self, keys: list[str] | None = None) -> dict[str, ScoredSample]:
        """Stored scores by key (all of them, or those of `keys`)."""
        with self._guard():
            rows = self._db.execute("SELECT score_key, record FROM scores WHERE status = 'done'").fetchall()
        wanted = set(keys) if keys is not None else None
        return {
            key: ScoredSample.model_validate_json(record) for key, record in rows if wanted is None or key in wanted
        }

    def failures(self) -> list[dict]:
        with self._guard():
            rows = self._db.execute(
                "SELECT score_key, error_kind, error, attempts FROM scores WHERE status = 'failed' ORDER BY rowid"
            ).fetchall()
        return [dict(zip(("score_key", "error_kind", "error", "attempts"), row)) for row in rows]

    def usage_totals(self) -> tuple[int, int]:
        """(prompt tokens, output tokens) of every stored score: what scoring has cost so far."""
        with self._guard():
            row = self._db.execute(
                "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(output_tokens), 0) FROM scores"
                " WHERE status = 'done'"
            ).fetchone()
        return int(row[0]), int(row[1])

    def counts(self) -> dict[str, int]:
        with self._guard():
            rows = self._db.execute("SELECT status, COUNT(*) FROM scores GROUP BY status").fetchall()
        return {"done": 0, "failed": 0, **dict(rows)}

    def start_run(self) -> int:
        with self._guard():
            return self._db.execute("INSERT INTO scoring_runs (started_at) VALUES (?)", (utc_now(),)).lastrowid

    def finish_run(self, run_id: int, summary: dict) -> None:
        with self._guard():
            self._db.execute(
                "UPDATE scoring_runs SET finished_at = ?, summary = ? WHERE id = ?",
                (utc_now(), json.dumps(summary, sort_keys=True), run_id),
            )
