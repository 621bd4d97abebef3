"""Logprob fields like a server's, and ledgers in the format before m005 (logprobs inside the JSON)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from synthdistill.records import HarvestRecord
from synthdistill.store import MIGRATIONS
from tests.records_fixtures import make_record

# token strings as servers send them: words with a leading space, punctuation, non-ASCII, byte tokens, ""
VOCAB = [" the", ",", ".", " answer", "é", " naïve", "日本", "bytes:\\xe2\\x80", "", "\n", " 4", "4", "<|im_end|>"]


def logprob_fields(n_tokens: int = 6, k: int = 3, seed: int = 0, *, ids: bool = True) -> dict:
    """The six logprob fields of an answer of `n_tokens` with top-`k` (ids optional), each id naming one string."""
    rng = random.Random(seed)
    words = VOCAB + [f" w{i}" for i in range(40)]
    chosen = [[rng.randrange(len(words)) for _ in range(k)] for _ in range(n_tokens)]
    fields = {
        "tokens": [words[row[0]] for row in chosen],
        "token_logprobs": [-rng.random() * 2 for _ in chosen],
        "top_tokens": [[words[i] for i in row] for row in chosen],
        "top_logprobs": [sorted((-rng.random() * 12 for _ in row), reverse=True) for row in chosen],
    }
    if ids:
        fields |= {
            "token_ids": [row[0] * 7 + 3 for row in chosen],
            "top_ids": [[i * 7 + 3 for i in row] for row in chosen],
        }
    return fields


def records_with_logprobs(n: int, n_tokens: int = 6, k: int = 3) -> list[HarvestRecord]:
    """`n` records: most with ids, every fifth without ids, every seventh without logprobs."""
    records = []
    for i in range(n):
        fields = {} if i % 7 == 6 else logprob_fields(n_tokens, k, seed=i, ids=i % 5 != 4)
        records.append(make_record(question=f"question {i}", text=f"answer {i}", logprobs=fields))
    return records


def write_old_ledger(path: Path, records: list[HarvestRecord], failed: int = 1) -> None:
    """A ledger as synthdistill wrote it before m005: migrations m001-m004, each record whole in its JSON."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, sql in MIGRATIONS[:4]:
        db.executescript(sql)
        db.execute("INSERT INTO migrations VALUES (?, '2026-11-01T00:00:00.000+00:00')", (name,))
    db.execute("BEGIN")
    for record in records:
        db.execute(
            "INSERT INTO requests VALUES (?, ?, ?, ?, 'done', ?, NULL, NULL, 1, '2026-11-01T00:00:00.000+00:00')",
            (record.request_key, record.prompt_id, record.pack, record.sample_index, record.model_dump_json()),
        )
    for i in range(failed):
        db.execute(
            "INSERT INTO requests VALUES (?, 'p', 'demo', 0, 'failed', NULL, '500', 'boom', 2, '2026-11-01T00:00:00+00:00')",
            (f"failed-{i}",),
        )
    db.execute("COMMIT")
    db.close()
