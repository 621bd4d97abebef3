"""Issue 14, point 4: a teacher that stops answering ends the harvest (exit 1), answers kept.

Real processes against the loopback server: always 429, never answering, answering and
then failing, failing until the pauses add up; and the progress lines a log gets
without a terminal.
"""

from __future__ import annotations

import json
import re

from tests.harvest_fixtures import done_count, ledger_of, write_project
from tests.hostile.cli_process import run_cli
from tests.openai_server import FakeOpenAIServer

RESUME = "run `synthdistill harvest` again to resume"


def _host(server) -> str:
    return server.base_url.removeprefix("http://").removesuffix("/v1")


def test_a_server_that_always_answers_429_is_given_up_on(tmp_path):
    with FakeOpenAIServer(rates={"429": 1.0}, retry_after=0.2) as server:
        config = write_project(tmp_path, server.base_url, 50, harvest={"give_up_after_s": 3})
        result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
        host = _host(server)
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    last = result.err.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"error: stopped waiting: the teacher at {re.escape(host)} gave no answer for 3 s "
        r"\(harvest.give_up_after_s = 3\); it sent only errors: 429 ×\d+\. "
        rf"The 0 answers of this run are kept in the ledger; {re.escape(RESUME)}",
        last,
    ), last
    assert result.seconds < 15, result.seconds


def test_a_server_that_never_answers_is_given_up_on(tmp_path):
    with FakeOpenAIServer(latency_s=600) as server:
        config = write_project(tmp_path, server.base_url, 5, teacher={"timeout_s": 300}, harvest={"give_up_after_s": 2})
        result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
        host = _host(server)
    assert result.code == 1, result.err
    assert result.err.strip().splitlines()[-1] == (
        f"error: stopped waiting: the teacher at {host} gave no answer for 2 s (harvest.give_up_after_s = 2); "
        f"it sent no answer and no error (every request was still waiting). "
        f"The 0 answers of this run are kept in the ledger; {RESUME}"
    )
    assert result.seconds < 12, result.seconds


def test_answers_before_the_teacher_got_stuck_are_kept(tmp_path):
    with FakeOpenAIServer(schedule=["ok"] * 5, rates={"429": 1.0}, retry_after=0.1) as server:
        config = write_project(
            tmp_path, server.base_url, 20, teacher={"max_concurrency": 1}, harvest={"give_up_after_s": 2}
        )
        result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
    assert result.code == 1, result.err
    assert "The 5 answers of this run are kept in the ledger" in result.err
    assert done_count(ledger_of(tmp_path)) == 5


def test_failure_pauses_past_max_pause_s_end_the_harvest(tmp_path):
    with FakeOpenAIServer(rates={"500": 1.0}) as server:
        config = write_project(
            tmp_path,
            server.base_url,
            20,
            teacher={"max_retries": 50},
            harvest={"give_up_after_s": 600, "max_pause_s": 2},
        )
        result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
    assert result.code == 1, result.err
    last = result.err.strip().splitlines()[-1]
    assert re.search(
        r"kept failing until every sender had paused \d+ s in all \(harvest.max_pause_s = 2\); "
        r"it sent only errors: 500 ×\d+\.",
        last,
    ), last
    assert result.seconds < 20, result.seconds


def test_without_a_terminal_progress_is_a_line_every_few_seconds(tmp_path):
    with FakeOpenAIServer(rates={"429": 1.0}, retry_after=0.2) as server:
        config = write_project(tmp_path, server.base_url, 5, harvest={"give_up_after_s": 3, "progress_every_s": 0.5})
        human = run_cli("harvest", "-c", str(config), cwd=tmp_path)
        machine = run_cli("harvest", "-c", str(config), "--json", cwd=tmp_path)
    lines = [line for line in human.err.splitlines() if line.startswith("harvest: ")]
    assert len(lines) >= 3, human.err
    assert re.fullmatch(
        r"harvest: 0/5 done \(0 answered, 0 failed this run\), errors 429:\d+.*, \d+ pauses, \d+ s", lines[-1]
    ), lines[-1]
    events = [json.loads(line) for line in machine.err.splitlines() if line.startswith("{")]
    assert len(events) >= 3, machine.err
    assert events[-1]["event"] == "progress" and events[-1]["total"] == 5 and events[-1]["answered"] == 0
    assert events[-1]["errors"]["429"] > 0
    # stdout keeps only the final JSON object (the harvest failed: the error), progress goes to stderr
    assert json.loads(machine.out)["error"]["type"] == "TeacherStuck"
