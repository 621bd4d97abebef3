"""Issue 14, point 2: one writer per run folder, tested with real processes.

A second harvest (or filter, build, train) on a run folder that a harvest holds exits 2
at once, naming the holder's pid; a lock left by a `kill -9`ed process never blocks.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.harvest_fixtures import done_count, ledger_of, write_project
from tests.hostile.cli_process import finish, run_cli, start_cli
from tests.openai_server import FakeOpenAIServer


def _wait_until_answering(process, ledger, deadline_s: float = 30.0) -> None:
    started = time.monotonic()
    while done_count(ledger) < 1:
        assert process.poll() is None, "the first harvest ended early"
        assert time.monotonic() - started < deadline_s
        time.sleep(0.02)


@pytest.mark.parametrize("second", ["harvest", "filter", "build", "train"])
def test_a_second_stage_on_a_locked_run_folder_exits_2_naming_the_holder(tmp_path, second):
    with FakeOpenAIServer(latency_s=0.2) as server:
        config = write_project(tmp_path, server.base_url, 40, teacher={"max_concurrency": 2})
        ledger = ledger_of(tmp_path)
        started = time.monotonic()
        first = start_cli("harvest", "-c", str(config), "--json", cwd=tmp_path, out=tmp_path / "first")
        _wait_until_answering(first, ledger)
        result = run_cli(second, "-c", str(config), cwd=tmp_path)
        requests_while_refused = server.stats()["requests"]
        assert first.poll() is None, "the first harvest should still be running"
        done = finish(first, tmp_path / "first", started, timeout_s=60)
    run_dir = tmp_path / "outputs" / "run"
    assert result.code == 2, result.err
    assert result.err.strip() == (
        f"error: {run_dir}: the run folder is in use by pid {first.pid} (synthdistill harvest); wait for it to "
        "finish (or stop it; a stopped run resumes where it left off)"
    )
    assert result.seconds < 10
    assert done.code == 0, done.err
    summary = json.loads(done.out)
    assert summary["answered"] == 40 and summary["requests_sent"] == 40  # nothing was paid for twice
    assert requests_while_refused <= 40


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path):
    with FakeOpenAIServer(latency_s=0.2) as server:
        config = write_project(tmp_path, server.base_url, 20, teacher={"max_concurrency": 2})
        ledger = ledger_of(tmp_path)
        first = start_cli("harvest", "-c", str(config), cwd=tmp_path, out=tmp_path / "first")
        _wait_until_answering(first, ledger)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        lock = tmp_path / "outputs" / "run" / ".synthdistill.lock"
        assert lock.read_text().strip() == f"pid {first.pid} (synthdistill harvest)"  # the dead holder's note stays
        result = run_cli("harvest", "-c", str(config), "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    assert json.loads(result.out)["already_done"] >= 1
    assert done_count(ledger) == 20


def test_the_lock_file_is_not_an_audited_artifact(tmp_path):
    from synthdistill.audit.hashing import artifact_paths

    (tmp_path / "harvest").mkdir()
    (tmp_path / "harvest" / "decision.json").write_text("{}")
    (tmp_path / ".synthdistill.lock").write_text("pid 1 (synthdistill harvest)\n")
    assert [p.as_posix() for p in artifact_paths(tmp_path)] == ["harvest/decision.json"]
