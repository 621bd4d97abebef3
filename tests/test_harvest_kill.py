"""`kill -9` of a real `synthdistill harvest` process mid-run, then a re-run: every prompt answered exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.harvest_fixtures import assert_each_prompt_answered_once, done_count, ledger_of, write_project
from tests.openai_server import FakeOpenAIServer

N_PROMPTS = 60
CONCURRENCY = 4


def _harvest_process(config, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "synthdistill", "harvest", "-c", str(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def _kill_when_partly_done(process: subprocess.Popen, ledger, at_least: int, deadline_s: float = 60.0) -> None:
    started = time.monotonic()
    while done_count(ledger) < at_least:
        assert process.poll() is None, f"harvest ended before it was killed: {process.communicate()}"
        assert time.monotonic() - started < deadline_s, "harvest made no progress"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("kill_after", [1, N_PROMPTS // 5, N_PROMPTS * 3 // 4])
def test_sigkill_mid_run_then_resume_answers_every_prompt_exactly_once(tmp_path, kill_after):
    # every answer takes 0.15 s, so 60 prompts at concurrency 4 take ~2.3 s: time to kill mid-run
    with FakeOpenAIServer(latency_s=0.15) as server:
        config = write_project(tmp_path, server.base_url, N_PROMPTS, teacher={"max_concurrency": CONCURRENCY})
        ledger = ledger_of(tmp_path)

        first = _harvest_process(config)
        _kill_when_partly_done(first, ledger, at_least=kill_after)
        time.sleep(0.3)  # let the server finish reading what the dead client had already written
        done_after_kill = done_count(ledger)
        sent_before_kill = server.stats()["requests"]
        in_flight_at_kill = sent_before_kill - done_after_kill
        assert 0 < done_after_kill < N_PROMPTS
        assert 0 <= in_flight_at_kill <= CONCURRENCY
        with sqlite3.connect(ledger) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

        second = _harvest_process(config, "--json")
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        summary = json.loads(out)
        stats = server.stats()

    assert summary["already_done"] == done_after_kill
    assert summary["answered"] == N_PROMPTS - done_after_kill
    assert summary["failed"] == 0
    # finished requests are never sent again: the re-run sent exactly the missing ones
    assert summary["requests_sent"] == stats["requests"] - sent_before_kill == N_PROMPTS - done_after_kill
    assert stats["requests"] <= N_PROMPTS + in_flight_at_kill
    assert_each_prompt_answered_once(ledger, N_PROMPTS)


def test_rerun_after_a_complete_harvest_sends_nothing(tmp_path):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 5)
        for expected_sent in (5, 0):
            run = _harvest_process(config, "--json")
            out, err = run.communicate(timeout=60)
            assert run.returncode == 0, err
            assert json.loads(out)["requests_sent"] == expected_sent
        assert server.stats()["requests"] == 5
