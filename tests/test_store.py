"""The SQLite ledger: answers are stored once, failures keep their error, state survives reopening."""

from __future__ import annotations

import sqlite3

from synthdistill.store import MIGRATIONS, HarvestStore
from tests.records_fixtures import make_record


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
