"""The SQLite ledger: answers are stored once, failures keep their error, state survives reopening."""

from __future__ import annotations

import ast
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from synthdistill.records import HarvestRecord
from synthdistill.store import MIGRATIONS, HarvestStore, LedgerReader, LedgerReadError, checkpoint, wal_path
from tests.ledger_fixtures import records_with_logprobs, write_old_ledger
from tests.records_fixtures import make_record

PACKAGE = Path(__file__).resolve().parents[1] / "synthdistill"
SQL = re.compile(r"\b(SELECT\b.*\bFROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX)|PRAGMA)\b", re.S)


def test_done_record_round_trips_and_is_never_overwritten(tmp_path):
    path = tmp_path / "ledger.sqlite"
    first = make_record(text="first answer")
    with HarvestStore(path) as store:
        assert store.put_done(first) is True
        assert store.put_done(first.model_copy(update={"text": "second answer"})) is False
    with HarvestStore(path) as store:
        records = list(store.records())
        assert [r.text for r in records] == ["first answer"]
        assert records[0] == first
        assert store.done_keys() == {first.request_key}
        assert store.counts() == {"done": 1, "failed": 0}


def test_done_among_names_the_answered_keys_and_looks_each_up_by_key(tmp_path):
    """A plan asks 500 keys at a time: each lookup uses the key's index, never a walk over every answer."""
    from synthdistill.store import encoded_answer

    path = tmp_path / "ledger.sqlite"
    record = make_record()
    with HarvestStore(path) as store:
        store.put_done_encoded(
            [encoded_answer(record.model_copy(update={"request_key": f"{i:032x}"})) for i in range(4000)]
        )
        store.put_failed(f"{4001:032x}", "p", "demo", 0, "server", "boom", 3)
        asked = [f"{i:032x}" for i in (0, 7, 3999, 4000, 4001)]
        assert store.done_among(asked) == {f"{i:032x}" for i in (0, 7, 3999)}
        steps = []
        store._db.set_progress_handler(lambda: steps.append(1), 100)  # a call per 100 SQLite VM instructions
        store.done_among(asked)
        store._db.set_progress_handler(None, 100)
        assert len(steps) < 20  # walking the 4,000 answers' status index took > 400
    with LedgerReader(path) as reader:
        assert reader.done_among(asked * 150) == {f"{i:032x}" for i in (0, 7, 3999)}  # 750 keys: two queries


def test_failure_keeps_last_error_and_is_replaced_by_a_later_answer(tmp_path):
    record = make_record()
    with HarvestStore(tmp_path / "ledger.sqlite") as store:
        store.put_failed(record.request_key, record.prompt_id, record.pack, 0, "503", "503: busy", attempts=3)
        store.put_failed(record.request_key, record.prompt_id, record.pack, 0, "timeout", "timeout: slow", attempts=3)
        failures = store.failures()
        assert len(failures) == 1
        assert failures[0]["error_kind"] == "timeout"
        assert failures[0]["attempts"] == 6
        assert store.done_keys() == set()
        assert store.put_done(record) is True
        assert store.failures() == []
        # a late failure never replaces an answer
        store.put_failed(record.request_key, record.prompt_id, record.pack, 0, "500", "boom", attempts=1)
        assert store.counts() == {"done": 1, "failed": 0}


def test_migrations_are_recorded_once(tmp_path):
    path = tmp_path / "ledger.sqlite"
    HarvestStore(path).close()
    HarvestStore(path).close()
    names = [row[0] for row in sqlite3.connect(path).execute("SELECT name FROM migrations")]
    assert names == [name for name, _ in MIGRATIONS]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_usage_totals_sum_the_answers_only(tmp_path):
    with HarvestStore(tmp_path / "ledger.sqlite") as store:
        assert store.usage_totals() == (0, 0)
        store.put_done(make_record(question="a"))
        store.put_done(make_record(question="b"))
        failed = make_record(question="c")
        store.put_failed(failed.request_key, failed.prompt_id, failed.pack, 0, "500", "boom", attempts=1)
        assert store.usage_totals() == (10, 6)  # make_record: 5 prompt + 3 completion tokens each


def test_a_refused_answering_model_is_recorded_with_how_many_answers_came_from_it(tmp_path):
    with HarvestStore(tmp_path / "ledger.sqlite") as store:
        store.put_done(make_record(question="q1", model="served-name"))
        store.put_done(make_record(question="q2", model="served-name"))
        store.put_done(make_record(question="q3", model="fake-model"))
        assert store.refuse_model("served-name", "no policy matches teacher 'served-name'") == 2
        assert store.refuse_model("served-name", "refused again") == 2  # idempotent; the newest reason is kept
    with HarvestStore(tmp_path / "ledger.sqlite") as store:
        assert store.refused_models() == {"served-name": "refused again"}


def _ledger(path: Path) -> list:
    records = [
        make_record(question="a", model="m1"),
        make_record(question="b", model="m1"),
        make_record(question="c", model="m2", pack="other"),
    ]
    with HarvestStore(path) as store:
        run = store.start_run()
        for record in records:
            store.put_done(record)
        store.put_failed("k-failed", "p-failed", "demo", 0, "timeout", "timeout: slow", attempts=2)
        store.finish_run(run, {"prompts": 4})
    return records


def test_the_reader_summarises_the_ledger_read_only(tmp_path):
    path = tmp_path / "ledger.sqlite"
    records = _ledger(path)
    checkpoint(path)  # as the audit does before it hashes: the log is folded in and removed
    assert not wal_path(path).exists()
    before = path.read_bytes()
    with LedgerReader(path) as ledger:
        assert ledger.counts() == {"done": 3, "failed": 1}
        assert ledger.failures_by_kind() == {"timeout": 1}
        groups = ledger.answer_groups()
        assert [(g["model_answered"], g["pack"], g["answers"], g["tokens_in"], g["tokens_out"]) for g in groups] == [
            ("m1", "demo", 2, 10, 6),
            ("m2", "other", 1, 5, 3),
        ]
        assert [(run["summary"], bool(run["finished_at"])) for run in ledger.runs()] == [({"prompts": 4}, True)]
        found = ledger.find(records[0].request_key[:8], min_prefix=6)
        assert [row["request_key"] for row in found] == [records[0].request_key]
        assert found[0]["record"] == records[0].model_dump_json()
        assert ledger.find(records[0].request_key[:5], min_prefix=6) == []  # too short for a prefix
        assert [row["status"] for row in ledger.find("p-failed", min_prefix=6)] == ["failed"]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite"]  # immutable: no -wal or -shm made


def test_the_reader_sees_writes_still_in_the_log(tmp_path):
    path = tmp_path / "ledger.sqlite"
    store = HarvestStore(path)  # held open: its commits stay in ledger.sqlite-wal
    store.put_done(make_record())
    assert wal_path(path).stat().st_size > 0
    with LedgerReader(path) as ledger:
        assert ledger.counts() == {"done": 1, "failed": 0}
    store.close()


def test_a_foreign_file_is_a_read_error_not_a_crash(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"not a database at all" * 10)
    with LedgerReader(path) as ledger, pytest.raises(LedgerReadError, match="not a database"):
        ledger.counts()
    wal_path(path).write_bytes(b"x")
    with pytest.raises(LedgerReadError, match="not a database"):
        checkpoint(path)


def _sql_outside_the_store(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "sqlite3" for a in node.names):
            found.append(f"{path.name}:{node.lineno}: import sqlite3")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlite3":
            found.append(f"{path.name}:{node.lineno}: from sqlite3 import")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append(f"{path.name}:{node.lineno}: SQL {node.value.strip()[:40]!r}")
        elif isinstance(node, ast.JoinedStr):  # an f-string: its literal parts with a gap for each value
            text = "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
            if SQL.search(text):
                found.append(f"{path.name}:{node.lineno}: SQL {text.strip()[:40]!r}")
    return found


def _a_store_module(path: Path) -> bool:
    """store.py (the ledger, scoring/store.py) and its parts beside it (store_schema.py, store_reader.py)."""
    return path.name == "store.py" or (path.name.startswith("store_") and (path.parent / "store.py").exists())


def test_no_module_but_the_store_imports_sqlite3_or_holds_sql():
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if not _a_store_module(path)
        for hit in _sql_outside_the_store(path)
    ]
    assert found == []
    assert _sql_outside_the_store(PACKAGE / "store.py")  # the checker does see the store's own


# -- m005: token ids and logprobs as typed binary ---------------------------------------------------


def _close(a: list[float], b: list[float], rel: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= rel * abs(y) + 1e-7 for x, y in zip(a, b))


def _same_record(got: dict, want: dict) -> None:
    """Equal, ids and strings exactly, token_logprobs within float32 and top_logprobs within float16 rounding."""
    for name, rel in (("token_logprobs", 2**-23), ("top_logprobs", 2**-11)):
        a, b = got.pop(name), want.pop(name)
        assert (a is None) == (b is None), name
        if b is not None:
            rows = zip(a, b) if name == "top_logprobs" else [(a, b)]
            assert all(_close(x, y, rel) for x, y in rows), name
    assert got == want


def test_logprobs_are_stored_as_a_blob_and_read_back(tmp_path):
    path = tmp_path / "ledger.sqlite"
    records = records_with_logprobs(14)
    with HarvestStore(path) as store:
        for record in records:
            store.put_done(record)
        back = list(store.records())
    for got, want in zip(back, records, strict=True):
        _same_record(got.model_dump(), want.model_dump())
    db = sqlite3.connect(path)
    stored = db.execute("SELECT record, logprobs FROM requests ORDER BY rowid").fetchall()
    assert all(json.loads(text)["top_logprobs"] is None for text, _ in stored)  # none left in the JSON
    assert [blob is None for _, blob in stored] == [i % 7 == 6 for i in range(14)]
    with LedgerReader(path) as ledger:
        payloads = ledger.record_payloads(ledger.answered_rowids())
        assert sum(group["with_logprobs"] for group in ledger.answer_groups()) == 12
        [row] = ledger.find(records[0].request_key, min_prefix=6)
    for got, want in zip(payloads, records, strict=True):
        _same_record(got, json.loads(want.model_dump_json()))
    _same_record(json.loads(row["record"]), records[0].model_dump())


def _payloads(path: Path) -> list[dict]:
    with LedgerReader(path) as ledger:
        return ledger.record_payloads(ledger.answered_rowids())


def test_m005_converts_an_old_ledger_and_every_record_reads_back_equal(tmp_path):
    path = tmp_path / "ledger.sqlite"
    records = records_with_logprobs(30)
    write_old_ledger(path, records)
    with LedgerReader(path) as ledger:  # read-only, before the migration: the old rows as they are
        assert ledger.record_payloads(ledger.answered_rowids()) == [json.loads(r.model_dump_json()) for r in records]
        assert sum(group["with_logprobs"] for group in ledger.answer_groups()) == 26
    with HarvestStore(path) as store:
        back = list(store.records())
        assert store.counts() == {"done": 30, "failed": 1}
    for got, want in zip(back, records, strict=True):
        _same_record(got.model_dump(), want.model_dump())
    names = [row[0] for row in sqlite3.connect(path).execute("SELECT name FROM migrations")]
    assert names == [name for name, _ in MIGRATIONS]
    blobs = sqlite3.connect(path).execute("SELECT COUNT(logprobs) FROM requests").fetchone()[0]
    assert blobs == 26  # every record with logprobs; the four without and the failure have none
    for got, want in zip(_payloads(path), records, strict=True):
        _same_record(got, json.loads(want.model_dump_json()))


KILL_MID_MIGRATION = """
import os, signal, sys
from synthdistill import ledger_codec, store
store.MIGRATION_BATCH = 10
split, calls = ledger_codec.split_record, []
def split_then_die(payload):
    calls.append(1)
    if len(calls) == 25:  # two batches committed, the third half converted
        os.kill(os.getpid(), signal.SIGKILL)
    return split(payload)
ledger_codec.split_record = split_then_die
store.HarvestStore(sys.argv[1])
"""


def test_a_kill_mid_migration_leaves_a_ledger_the_next_open_finishes(tmp_path):
    path = tmp_path / "ledger.sqlite"
    records = records_with_logprobs(50)  # 43 with logprobs
    write_old_ledger(path, records)
    killed = subprocess.run([sys.executable, "-c", KILL_MID_MIGRATION, str(path)], capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    names = {row[0] for row in db.execute("SELECT name FROM migrations")}
    assert "m005_compact_logprobs" not in names and "m005_compact_logprobs:schema" in names
    assert (
        db.execute("SELECT COUNT(logprobs) FROM requests").fetchone()[0] == 18
    )  # two batches of 10 rows: 18 with logprobs
    db.close()
    for got, want in zip(_payloads(path), records, strict=True):  # half converted, every record readable
        _same_record(got, json.loads(want.model_dump_json()))
    with HarvestStore(path) as store:
        back = list(store.records())
    for got, want in zip(back, records, strict=True):
        _same_record(got.model_dump(), want.model_dump())
    db = sqlite3.connect(path)
    assert [row[0] for row in db.execute("SELECT name FROM migrations")] == [name for name, _ in MIGRATIONS]
    assert db.execute("SELECT COUNT(logprobs) FROM requests").fetchone()[0] == 43


def test_a_real_quickstart_ledger_from_before_m004_migrates_and_reads_back_equal(tmp_path):
    # three answers of the quickstart's in-process SmolLM2 teacher at top-20, as synthdistill wrote them on
    # 2026-12-01 (migrations m001-m003): each record whole in its JSON
    path = tmp_path / "ledger.sqlite"
    shutil.copyfile(Path(__file__).parent / "data" / "ledger-m003-quickstart.sqlite", path)
    before = _payloads(path)
    assert [len(p["top_logprobs"]) for p in before] == [49, 5, 96] and len(before[2]["top_ids"][0]) == 20
    with HarvestStore(path) as store:
        back = [record.model_dump() for record in store.records()]
    for got, want in zip(back, before, strict=True):
        _same_record(got, json.loads(HarvestRecord.model_validate(want).model_dump_json()))
    for got, want in zip(_payloads(path), before, strict=True):
        _same_record(got, want)
    db = sqlite3.connect(path)
    assert [row[0] for row in db.execute("SELECT name FROM migrations")] == [name for name, _ in MIGRATIONS]
    assert db.execute("SELECT COUNT(logprobs) FROM requests").fetchone()[0] == 3
