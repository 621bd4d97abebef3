"""`teacher.backend: openai-batch` against the loopback Batch API: answers, crash-resume, per-line errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from synthdistill.cli import main
from synthdistill.teachers import openai_batch
from tests.harvest_fixtures import assert_each_prompt_answered_once, ledger_of, ledger_rows, write_project
from tests.openai_server import FakeOpenAIServer

BATCH = {"backend": "openai-batch"}


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setattr(openai_batch, "POLL_INTERVAL_S", 0.01)
    monkeypatch.setattr(openai_batch, "MAX_POLL_INTERVAL_S", 0.05)


def _harvest(capsys, config, expected_rc: int = 0) -> dict:
    rc = main(["harvest", "-c", str(config), "--json"])
    captured = capsys.readouterr()
    assert rc == expected_rc, captured.err
    return json.loads(captured.out)


def _batches(ledger) -> list[tuple[str, str, str | None]]:
    if not ledger.exists():
        return []
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
    try:
        return list(db.execute("SELECT batch_id, status, collected_at FROM batches ORDER BY rowid"))
    except sqlite3.OperationalError:  # the ledger or its tables are not created yet
        return []
    finally:
        db.close()


def test_batch_harvest_answers_every_prompt_once_with_logprobs(tmp_path, capsys):
    with FakeOpenAIServer(batch_polls_to_complete=3) as server:
        config = write_project(tmp_path, server.base_url, 6, teacher=BATCH)
        summary = _harvest(capsys, config)
        stats = server.stats()
    assert (summary["answered"], summary["failed"], summary["requests_sent"]) == (6, 0, 6)
    assert (stats["files_uploaded"], stats["batches_created"], stats["batch_polls"]) == (1, 1, 3)
    records = assert_each_prompt_answered_once(ledger_of(tmp_path), 6)
    for record in records:
        assert record["backend"] == "openai-batch"
        assert record["endpoint"] == f"127.0.0.1:{server.port}"
        assert len(record["token_logprobs"]) == len(record["tokens"]) > 0
        assert all(len(top) == 5 for top in record["top_logprobs"])
        assert record["token_logprobs"][:4] == [0.0, -0.25, -0.5, -0.75]
    assert [(b[0], b[1]) for b in _batches(ledger_of(tmp_path))] == [("batch_0", "completed")]
    # a re-run finds everything done: no new batch
    again = _harvest(capsys, config)
    assert (again["already_done"], again["requests_sent"]) == (6, 0)
    assert server.stats()["batches_created"] == 1


def _kill_harvest_when(config, ready) -> None:
    """Run a harvest in a subprocess and SIGKILL it once `ready()` is true."""
    process = subprocess.Popen(
        [sys.executable, "-m", "synthdistill", "harvest", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    started = time.monotonic()
    while not ready():
        assert process.poll() is None, f"harvest ended before it was killed: {process.communicate()}"
        assert time.monotonic() - started < 60, "the harvest never got there"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


def test_sigkill_after_submit_then_rerun_collects_the_same_batch(tmp_path, capsys):
    # the killed process polls every 10 s (the default): it is killed while its batch is open
    with FakeOpenAIServer(batch_polls_to_complete=2) as server:
        config = write_project(tmp_path, server.base_url, 5, teacher=BATCH)
        ledger = ledger_of(tmp_path)
        _kill_harvest_when(config, lambda: bool(_batches(ledger)))
        assert _batches(ledger)[0][2] is None  # submitted, not collected
        assert [r for r in ledger_rows(ledger) if r[1] == "done"] == []

        summary = _harvest(capsys, config)
        stats = server.stats()
    assert stats["batches_created"] == 1  # resumed, never resubmitted
    assert stats["files_uploaded"] == 1
    assert (summary["answered"], summary["requests_sent"], summary["failed"]) == (5, 0, 0)
    assert [(b[0], b[1]) for b in _batches(ledger)] == [("batch_0", "completed")]
    assert_each_prompt_answered_once(ledger, 5)


def test_error_lines_are_failures_retried_in_a_new_batch_next_run(tmp_path, capsys):
    with FakeOpenAIServer(schedule=["500", "ok", "503", "ok"]) as server:
        config = write_project(tmp_path, server.base_url, 4, teacher=BATCH)
        first = _harvest(capsys, config)
        assert (first["answered"], first["failed"], first["requests_sent"]) == (2, 2, 4)
        assert first["errors_by_kind"] == {"500": 1, "503": 1}
        failed = {key for key, status, _ in ledger_rows(ledger_of(tmp_path)) if status == "failed"}
        assert len(failed) == 2

        second = _harvest(capsys, config)
        stats = server.stats()
    assert (second["already_done"], second["answered"], second["failed"]) == (2, 2, 0)
    assert (second["requests_sent"], second["retried_failures"]) == (2, 2)
    assert stats["batches_created"] == 2
    assert_each_prompt_answered_once(ledger_of(tmp_path), 4)


def test_missing_key_is_refused_with_the_variable_named_and_never_leaked(tmp_path, capsys, monkeypatch):
    secret = "sk-batch-SECRET-123"
    monkeypatch.setenv("BATCH_KEY", "sk-wrong-" + secret)
    with FakeOpenAIServer(require_key=secret) as server:
        config = write_project(tmp_path, server.base_url, 2, teacher={**BATCH, "api_key_env": "BATCH_KEY"})
        rc = main(["harvest", "-c", str(config)])
        captured = capsys.readouterr()
        assert server.stats()["batches_created"] == 0
    assert rc != 0
    assert "BATCH_KEY" in captured.err and secret not in captured.err + captured.out


def test_budget_limits_what_goes_into_a_batch_and_a_later_run_sends_the_rest(tmp_path, capsys):
    pricing = {"models": [{"model": "fake-model", "input_per_million": 1000.0, "output_per_million": 1000.0}]}
    n = 10
    with FakeOpenAIServer() as server:
        config = write_project(
            tmp_path, server.base_url, n, teacher=BATCH, harvest={"budget_usd": 0.5}, pricing=pricing
        )
        first = _harvest(capsys, config)
        assert first["stopped"] == "budget" and 0 < first["answered"] < n
        assert first["answered"] + first["not_sent"] == n == first["requests_sent"] + first["not_sent"]
        assert 0 < first["cost_usd"] <= 0.5
        assert server.stats()["batches_created"] == 1

        config.write_text(config.read_text().replace("budget_usd: 0.5", "budget_usd: 10.0"))
        second = _harvest(capsys, config)
        assert second["stopped"] is None and second["answered"] == n - first["answered"]
        assert server.stats()["batches_created"] == 2
    assert_each_prompt_answered_once(ledger_of(tmp_path), n)


def test_an_expired_batch_fails_its_requests_and_the_next_run_sends_them_again(tmp_path, capsys):
    with FakeOpenAIServer(batch_end="expired") as server:
        config = write_project(tmp_path, server.base_url, 3, teacher=BATCH)
        first = _harvest(capsys, config, expected_rc=1)  # nothing answered: exit 1, the summary still printed
        assert (first["answered"], first["failed"], first["errors_by_kind"]) == (0, 3, {"batch-expired": 3})
        assert first["error"]["type"] == "NothingAnswered"
        assert [(b[0], b[1]) for b in _batches(ledger_of(tmp_path))] == [("batch_0", "expired")]

        server.configure(batch_end="completed")
        second = _harvest(capsys, config)
        assert (second["answered"], second["retried_failures"], server.stats()["batches_created"]) == (3, 3, 2)
    assert_each_prompt_answered_once(ledger_of(tmp_path), 3)


def test_requests_are_split_into_files_at_the_line_limit(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 7, teacher={**BATCH, "batch_max_requests": 3})
        summary = _harvest(capsys, config)
        stats = server.stats()
    assert (summary["answered"], summary["requests_sent"]) == (7, 7)
    assert (stats["files_uploaded"], stats["batches_created"], stats["input_lines"]) == (3, 3, [3, 3, 1])
    assert [b[1] for b in _batches(ledger_of(tmp_path))] == ["completed"] * 3
    assert_each_prompt_answered_once(ledger_of(tmp_path), 7)


def test_requests_are_split_into_files_at_the_byte_limit(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        # one file of every line first, to learn the line size
        config = write_project(tmp_path / "probe", server.base_url, 6, teacher=BATCH)
        _harvest(capsys, config)
        (line_bytes,) = server.stats()["input_bytes"]
        limit = int(line_bytes / 6 * 2.5)  # two lines fit, three do not
        server.reset()
        config = write_project(tmp_path / "split", server.base_url, 6, teacher={**BATCH, "batch_max_bytes": limit})
        summary = _harvest(capsys, config)
        stats = server.stats()
    assert (summary["answered"], stats["batches_created"], stats["input_lines"]) == (6, 3, [2, 2, 2])
    assert all(size <= limit for size in stats["input_bytes"])
    assert_each_prompt_answered_once(ledger_of(tmp_path / "split"), 6)


def _intents(ledger) -> list[tuple[str, str, str | None, str | None]]:
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5)
    try:
        return list(db.execute("SELECT intent_id, status, input_file_id, batch_id FROM batch_intents ORDER BY rowid"))
    finally:
        db.close()


@pytest.mark.parametrize("hold", ["create", "upload"])
def test_sigkill_between_submission_and_ledger_write_finds_the_batch_instead_of_resubmitting(tmp_path, capsys, hold):
    # create: POST /batches created the batch, the client is killed before its answer reaches the ledger;
    # upload: the file is stored, the client is killed before it learns the file id (no batch yet)
    with FakeOpenAIServer(batch_hold=hold) as server:
        config = write_project(tmp_path, server.base_url, 5, teacher=BATCH)
        ledger = ledger_of(tmp_path)
        stat = "batches_created" if hold == "create" else "files_uploaded"
        _kill_harvest_when(config, lambda: server.stats()[stat] > 0)  # the server holds its answer
        assert _batches(ledger) == []  # the ledger never heard of the batch
        [(intent_id, status, file_id, batch_id)] = _intents(ledger)
        # the file id is recorded once the upload answers: known when the kill came at create
        assert (status, file_id, batch_id) == ("submitting", "file-in-0" if hold == "create" else None, None)

        server.configure(batch_hold=None)
        summary = _harvest(capsys, config)
        stats = server.stats()
    assert (stats["files_uploaded"], stats["batches_created"]) == (1, 1)  # found, never submitted again
    assert stats["batch_lists"] >= 1
    assert (summary["answered"], summary["failed"]) == (5, 0)
    assert [(b[0], b[1]) for b in _batches(ledger)] == [("batch_0", "completed")]
    assert _intents(ledger) == [(intent_id, "submitted", "file-in-0", "batch_0")]
    assert_each_prompt_answered_once(ledger, 5)


def test_an_intent_that_never_reached_the_provider_is_sent_in_a_new_batch(tmp_path, capsys):
    from synthdistill.store import HarvestStore

    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 3, teacher=BATCH)
        ledger = ledger_of(tmp_path)
        with HarvestStore(ledger) as store:  # a run killed right after recording its intent
            store.put_batch_intent("lost", ["k1", "k2"])
        summary = _harvest(capsys, config)
        stats = server.stats()
    assert (stats["files_uploaded"], stats["batches_created"], summary["answered"]) == (1, 1, 3)
    assert "lost" not in [row[0] for row in _intents(ledger)]
    assert_each_prompt_answered_once(ledger, 3)


def test_batches_are_listed_page_by_page_to_find_an_interrupted_one(tmp_path, capsys):
    with FakeOpenAIServer(batch_list_page=1, batch_hold="create") as server:
        config = write_project(tmp_path / "now", server.base_url, 2, teacher=BATCH)
        _kill_harvest_when(config, lambda: server.stats()["batches_created"] > 0)  # batch_0, unknown to its ledger
        server.configure(batch_hold=None)
        other = write_project(tmp_path / "other", server.base_url, 3, teacher=BATCH)
        _harvest(capsys, other)  # batch_1, newer: listed first, one batch per page
        summary = _harvest(capsys, config)
        stats = server.stats()
    assert (stats["batches_created"], summary["answered"], stats["batch_lists"]) == (2, 2, 2)
    assert [(b[0], b[1]) for b in _batches(ledger_of(tmp_path / "now"))] == [("batch_0", "completed")]
    assert_each_prompt_answered_once(ledger_of(tmp_path / "now"), 2)


def test_a_request_too_large_for_any_batch_file_fails_without_a_batch(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 2, teacher={**BATCH, "batch_max_bytes": 100})
        summary = _harvest(capsys, config, expected_rc=1)  # nothing answered
        stats = server.stats()
    assert (stats["files_uploaded"], stats["batches_created"]) == (0, 0)
    assert (summary["failed"], summary["requests_sent"], summary["errors_by_kind"]) == (
        2,
        0,
        {"batch-line-too-large": 2},
    )
    failures = [row for row in ledger_rows(ledger_of(tmp_path)) if row[1] == "failed"]
    assert len(failures) == 2
