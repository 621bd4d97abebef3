"""The harvest ledger's schema: named, append-only migrations (applied in order by HarvestStore).

A migration's SQL runs once per ledger and is recorded by name in `migrations`; one that
converts existing rows (m005) does so in batches of MIGRATION_BATCH after its schema change.
"""

from __future__ import annotations

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
    (
        # Token ids and logprobs as typed binary (ledger_codec.py) beside the record's JSON; existing
        # rows are converted a batch per transaction (`_compact_rows`), so a killed run resumes it.
        "m005_compact_logprobs",
        "ALTER TABLE requests ADD COLUMN logprobs BLOB",
    ),
    (
        # A Batch API submission recorded before it is sent (its id goes into the batch's metadata
        # and the uploaded file's name), so a run killed between POST /batches and the ledger write
        # finds its batch on resume instead of submitting it again. `batch_id` is set once known.
        "m006_batch_intents",
        """
        CREATE TABLE batch_intents (
            intent_id     TEXT PRIMARY KEY,
            request_keys  TEXT NOT NULL,
            status        TEXT NOT NULL CHECK (status IN ('submitting', 'submitted')),
            input_file_id TEXT,
            batch_id      TEXT,
            created_at    TEXT NOT NULL
        );
        """,
    ),
    (
        # `synthdistill merge`: each merge of shard ledgers into this one, with its inputs (the audit lists them).
        "m007_merges",
        """
        CREATE TABLE merges (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            merged_at TEXT NOT NULL,
            summary   TEXT NOT NULL
        );
        """,
    ),
    (
        # One embedding vector per answer (harvest_embeddings.py), keyed by the answer's request and the
        # embedding spec (model, dimensions, input): a changed spec embeds again, never overwrites.
        # `vector` holds `dims` little-endian numbers of `dtype` (float32): 4 bytes each, not JSON.
        "m008_embeddings",
        """
        CREATE TABLE embeddings (
            request_key TEXT NOT NULL,
            spec        TEXT NOT NULL,
            model       TEXT NOT NULL,
            dims        INTEGER NOT NULL,
            dtype       TEXT NOT NULL,
            vector      BLOB NOT NULL,
            tokens      INTEGER NOT NULL,
            attempts    INTEGER NOT NULL,
            endpoint    TEXT,
            created_at  TEXT NOT NULL,
            PRIMARY KEY (request_key, spec)
        );
        CREATE TABLE embedding_failures (
            request_key TEXT NOT NULL,
            spec        TEXT NOT NULL,
            error_kind  TEXT NOT NULL,
            error       TEXT NOT NULL,
            attempts    INTEGER NOT NULL,
            updated_at  TEXT NOT NULL,
            PRIMARY KEY (request_key, spec)
        );
        """,
    ),
]
# Migrations that convert existing rows after their schema change, then are recorded as applied.
MIGRATION_BATCH = 200
