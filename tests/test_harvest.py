"""`synthdistill harvest` against the loopback server: faults, auth, resume, failover, budget, secrets."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from synthdistill.cli import main
from tests.harvest_fixtures import (
    FAKE_MODEL,
    assert_each_prompt_answered_once,
    ledger_of,
    ledger_rows,
    question,
    write_project,
)
from tests.openai_server import FakeOpenAIServer

KEY = "sk-live-TOPSECRET-4f9a8b7c6d5e"
FAULTS = ["429", "500", "503", "drop", "malformed", "slow", "no-logprobs"]


def _harvest(capsys, config, *extra: str) -> tuple[int, dict | None, str]:
    """(exit code, --json summary or None, stderr)."""
    rc = main(["harvest", "-c", str(config), "--json", *extra])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out) if captured.out.strip() else None, captured.err


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_twenty_percent_faults_every_prompt_answered_once_with_its_own_prompt(tmp_path, capsys):
    n = 80
    with FakeOpenAIServer(fault_rate=0.2, fault_kinds=FAULTS, retry_after=0.1, slow_s=0.3, seed=7) as server:
        config = write_project(tmp_path, server.base_url, n, teacher={"max_concurrency": 16, "timeout_s": 5})
        rc, summary, err = _harvest(capsys, config)
        stats = server.stats()
    assert rc == 0, err
    records = assert_each_prompt_answered_once(ledger_of(tmp_path), n)
    assert summary["answered"] == n and summary["failed"] == 0
    faults = {k: v for k, v in stats["by_outcome"].items() if k not in ("ok", "slow")}
    assert set(faults) == {"429", "500", "503", "drop", "malformed", "no-logprobs"}  # seed 7 injects them all
    assert stats["by_outcome"]["slow"] >= 1  # slow answers that still came in time are kept
    # every request the server saw was sent by us; each fault cost exactly one retry
    assert summary["requests_sent"] == stats["requests"] == n + sum(faults.values())
    by_kind = summary["errors_by_kind"]
    assert by_kind.pop("connection") == faults.pop("drop")
    assert by_kind.pop("missing-logprobs") == faults.pop("no-logprobs")
    assert by_kind == faults
    for record in records:
        assert record["tokens"] and len(record["top_logprobs"][0]) == 5  # a no-logprobs answer was retried
        assert record["attempts"] >= 1 and record["endpoint"] == f"127.0.0.1:{server.port}"


def test_wrong_key_stops_within_seconds_and_never_shows_the_key(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TEACHER_KEY", KEY)
    with FakeOpenAIServer(require_key="the-right-key", latency_s=0.05) as server:
        config = write_project(
            tmp_path, server.base_url, 200, teacher={"api_key_env": "TEACHER_KEY", "max_concurrency": 8}
        )
        started = time.perf_counter()
        rc, summary, err = _harvest(capsys, config)
        elapsed = time.perf_counter() - started
        sent = server.stats()["requests"]
    # --json prints the error object: the same message as stderr's one error line
    assert rc == 1 and set(summary) == {"error"}
    assert (summary["error"]["type"], summary["error"]["exit_code"]) == ("TeacherAuthError", 1)
    assert err.strip() == f"error: {summary['error']['message']}" and KEY not in json.dumps(summary)
    assert elapsed < 5.0
    assert sent <= 8  # only the first wave, no retries
    assert "refused the request (HTTP 401)" in err and "TEACHER_KEY" in err
    assert KEY not in err
    assert ledger_rows(ledger_of(tmp_path)) == []  # an auth failure is not a request failure
    for path in (tmp_path / "outputs").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_the_key_is_sent_but_never_written_or_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TEACHER_KEY", KEY)
    with FakeOpenAIServer(require_key=KEY) as server:
        config = write_project(tmp_path, server.base_url, 5, teacher={"api_key_env": "TEACHER_KEY"})
        rc = main(["harvest", "-c", str(config)])
        captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert_each_prompt_answered_once(ledger_of(tmp_path), 5)
    assert KEY not in captured.out + captured.err
    files = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert files and all(KEY.encode() not in p.read_bytes() for p in files)


def test_missing_key_variable_is_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NO_SUCH_TEACHER_KEY", raising=False)
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 2, teacher={"api_key_env": "NO_SUCH_TEACHER_KEY"})
    rc, _, err = _harvest(capsys, config)
    assert rc == 2
    assert "NO_SUCH_TEACHER_KEY" in err and "not set" in err


def test_exhausted_failures_keep_their_last_error_and_are_retried_next_run(tmp_path, capsys):
    n = 6
    with FakeOpenAIServer(fail_first_n_per_prompt=3, fail_kinds=["500", "503"]) as server:
        config = write_project(tmp_path, server.base_url, n, teacher={"max_retries": 1})
        rc, first, err = _harvest(capsys, config)
        # every request failed: exit 1, and --json still prints the summary, plus the error
        assert rc == 1
        assert (first["answered"], first["failed"], first["requests_sent"]) == (0, n, 2 * n)
        message = (
            f"harvest: every request failed ({n}; errors: 500 ×{n}, 503 ×{n}); nothing was answered. "
            "Check the teacher, then run `synthdistill harvest` again: the next run retries them"
        )
        assert first["error"] == {"type": "NothingAnswered", "message": message, "exit_code": 1}
        assert err.count("error:") == 1 and "every request failed" in err
        rows = ledger_rows(ledger_of(tmp_path))
        assert [r[1] for r in rows] == ["failed"] * n
        from synthdistill.store import HarvestStore

        with HarvestStore(ledger_of(tmp_path)) as store:
            failures = store.failures()
        assert {(f["error_kind"], f["attempts"]) for f in failures} == {("503", 2)}
        assert all(f["error"].startswith("503: HTTP 503 from 127.0.0.1") for f in failures)

        rc, second, _ = _harvest(capsys, config)
        assert rc == 0
        # attempt 3 fails (500), attempt 4 is answered
        assert (second["answered"], second["failed"], second["retried_failures"]) == (n, 0, n)
        assert second["requests_sent"] == 2 * n
    records = assert_each_prompt_answered_once(ledger_of(tmp_path), n)
    assert {r["attempts"] for r in records} == {2}


def test_fresh_starts_over(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 4)
        assert _harvest(capsys, config)[1]["requests_sent"] == 4
        assert _harvest(capsys, config)[1]["requests_sent"] == 0
        rc, summary, _ = _harvest(capsys, config, "--fresh")
        assert rc == 0 and summary["already_done"] == 0 and summary["requests_sent"] == 4
        assert server.stats()["requests"] == 8
    assert_each_prompt_answered_once(ledger_of(tmp_path), 4)


def test_failover_to_the_live_url_when_one_is_dead(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, [_dead_url(), server.base_url], 20, teacher={"max_concurrency": 4})
        rc, summary, err = _harvest(capsys, config)
    assert rc == 0, err
    records = assert_each_prompt_answered_once(ledger_of(tmp_path), 20)
    assert {r["endpoint"] for r in records} == {f"127.0.0.1:{server.port}"}
    # only the first wave (4 workers, round-robin over 2 URLs) meets the dead URL; then it cools down
    assert set(summary["errors_by_kind"]) == {"connection"} and 1 <= summary["errors_by_kind"]["connection"] <= 2


def test_requests_are_spread_over_several_urls(tmp_path, capsys):
    with FakeOpenAIServer() as one, FakeOpenAIServer() as two:
        config = write_project(tmp_path, [one.base_url, two.base_url], 20, teacher={"max_concurrency": 4})
        rc, _, err = _harvest(capsys, config)
        assert rc == 0, err
        assert one.stats()["requests"] == two.stats()["requests"] == 10
    records = assert_each_prompt_answered_once(ledger_of(tmp_path), 20)
    assert {r["endpoint"] for r in records} == {f"127.0.0.1:{one.port}", f"127.0.0.1:{two.port}"}


def test_failover_when_a_server_dies_mid_run(tmp_path, capsys):
    with FakeOpenAIServer(latency_s=0.05) as survivor:
        dying = FakeOpenAIServer(latency_s=0.05).start()
        config = write_project(tmp_path, [dying.base_url, survivor.base_url], 40, teacher={"max_concurrency": 4})

        def stop_after_five_answers() -> None:
            deadline = time.monotonic() + 30
            while dying.stats()["by_outcome"].get("ok", 0) < 5 and time.monotonic() < deadline:
                time.sleep(0.005)
            dying.stop()

        killer = threading.Thread(target=stop_after_five_answers)
        killer.start()
        rc, summary, err = _harvest(capsys, config)
        killer.join()
    assert rc == 0, err
    records = assert_each_prompt_answered_once(ledger_of(tmp_path), 40)
    served_by_dying = sum(r["endpoint"] == f"127.0.0.1:{dying.port}" for r in records)
    assert 0 < served_by_dying < 20  # it answered until it died, then the survivor took over
    assert summary["answered"] == 40 and summary["failed"] == 0


def test_a_failing_server_makes_everyone_pause_instead_of_a_retry_storm(tmp_path, capsys):
    # the first 8 requests (one per prompt, all at once) fail: the brake pauses every sender for 1 s
    with FakeOpenAIServer(schedule=["500"] * 8) as server:
        config = write_project(tmp_path, server.base_url, 8, teacher={"max_concurrency": 8})
        rc, summary, _ = _harvest(capsys, config)
        assert server.stats()["requests"] == 16
    assert rc == 0
    assert summary["pauses"] == 1 and summary["seconds"] >= 1.0
    assert summary["errors_by_kind"] == {"500": 8}
    assert_each_prompt_answered_once(ledger_of(tmp_path), 8)


def test_retry_after_pauses_every_sender(tmp_path, capsys):
    with FakeOpenAIServer(schedule=["429"], retry_after=1.0) as server:
        config = write_project(tmp_path, server.base_url, 3, teacher={"max_concurrency": 1})
        rc, summary, _ = _harvest(capsys, config)
        assert server.stats()["requests"] == 4
    assert rc == 0 and summary["errors_by_kind"] == {"429": 1}
    assert summary["seconds"] >= 1.0
    assert_each_prompt_answered_once(ledger_of(tmp_path), 3)


def test_server_rate_limit_headers_slow_the_harvest(tmp_path, capsys):
    # 120 requests a minute = 2 a second: after the first answer, 5 more need ≥ 1.5 s (a burst of 2 first)
    with FakeOpenAIServer(ratelimit_headers={"x-ratelimit-limit-requests": "120"}) as server:
        config = write_project(tmp_path, server.base_url, 6, teacher={"max_concurrency": 1})
        rc, summary, _ = _harvest(capsys, config)
    assert rc == 0 and summary["answered"] == 6
    assert summary["seconds"] >= 1.4


PRICING = {"models": [{"model": FAKE_MODEL, "input_per_million": 1000.0, "output_per_million": 1000.0}]}


def _cost(records: list[dict]) -> float:
    return sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in records) * 0.001


def test_budget_stops_cleanly_before_exceeding_it_and_counts_earlier_runs(tmp_path, capsys):
    n = 40
    with FakeOpenAIServer() as server:
        config = write_project(
            tmp_path, server.base_url, n, teacher={"max_concurrency": 1}, harvest={"budget_usd": 0.5}, pricing=PRICING
        )
        rc, first, _ = _harvest(capsys, config)
        assert rc == 0 and first["stopped"] == "budget"
        assert 0 < first["answered"] < n and first["answered"] + first["not_sent"] == n
        assert server.stats()["requests"] == first["answered"]
        records = [json.loads(r[2]) for r in ledger_rows(ledger_of(tmp_path))]
        assert first["cost_usd"] == pytest.approx(_cost(records)) and first["cost_usd"] <= 0.5

        # the ledger's spending counts: the same budget sends nothing more
        rc, second, _ = _harvest(capsys, config)
        assert rc == 0 and second["stopped"] == "budget" and second["requests_sent"] == 0
        assert second["total_cost_usd"] == pytest.approx(first["cost_usd"])
        assert main(["harvest", "-c", str(config), "--quiet"]) == 0
        assert (
            f"stopped by harvest.budget_usd=0.5: ${first['cost_usd']:.4f} spent, {first['not_sent']} requests "
            "not sent; raise the budget and run again to continue"
        ) in capsys.readouterr().out

        config.write_text(config.read_text().replace("budget_usd: 0.5", "budget_usd: 10.0"))
        rc, third, _ = _harvest(capsys, config)
        assert rc == 0 and third["stopped"] is None and third["answered"] == n - first["answered"]
    records = assert_each_prompt_answered_once(ledger_of(tmp_path), n)
    assert third["total_cost_usd"] == pytest.approx(_cost(records))


def test_budget_without_a_price_refuses_to_start(tmp_path, capsys):
    config = write_project(tmp_path, "http://teacher.example.invalid/v1", 2, harvest={"budget_usd": 1.0})
    rc, _, err = _harvest(capsys, config)
    assert rc == 2
    assert "no price is known for teacher model 'fake-model'" in err and "pricing.yaml" in err


def test_each_answer_is_stored_with_its_own_prompt_under_concurrency(tmp_path, capsys):
    # answers arrive out of order (random latency per request would need a new fault; 'slow' shuffles them)
    with FakeOpenAIServer(rates={"slow": 0.3}, slow_s=0.2, seed=3) as server:
        config = write_project(tmp_path, server.base_url, 40, teacher={"max_concurrency": 16})
        rc, summary, _ = _harvest(capsys, config)
    assert rc == 0 and summary["answered"] == 40
    records = assert_each_prompt_answered_once(ledger_of(tmp_path), 40)
    by_question = {r["messages"][-1]["content"]: r for r in records}
    assert by_question[question(7)]["text"] == f"Answer to: {question(7)}"
