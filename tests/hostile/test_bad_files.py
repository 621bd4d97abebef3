"""Issue 14, point 5: every bad file is a one-line message naming the file, never a traceback.

The character rule (input_limits): a prompt may not hold NUL or a lone surrogate; both
are refused at the row's file and line.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

from tests.filtered_fixtures import kept_records
from tests.harvest_fixtures import done_count, ledger_of, write_project
from tests.hostile.cli_process import finish, run_cli, start_cli
from tests.openai_server import FakeOpenAIServer

HINT = "move it away, or run `synthdistill harvest --fresh` to start the harvest over (this deletes it)"


def _harvested(tmp_path, server, n: int = 30):
    config = write_project(tmp_path, server.base_url, n)
    result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
    assert result.code == 0, result.err
    return config


def _assert_message(result, code: int, expected: str) -> None:
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    assert result.err.strip() == f"error: {expected}"


def test_a_zero_length_ledger_is_refused_unless_fresh(tmp_path):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 5)
        ledger = ledger_of(tmp_path)
        ledger.parent.mkdir(parents=True)
        ledger.write_bytes(b"")
        refused = run_cli("harvest", "-c", str(config), cwd=tmp_path)
        assert server.stats()["requests"] == 0  # nothing was sent again
        fresh = run_cli("harvest", "-c", str(config), "--fresh", "--json", cwd=tmp_path)
    _assert_message(refused, 2, f"{ledger}: the harvest ledger is empty (0 bytes), so it holds no answers; {HINT}")
    assert fresh.code == 0, fresh.err
    assert json.loads(fresh.out)["answered"] == 5


def test_a_file_that_is_not_sqlite_is_refused_by_harvest_and_filter(tmp_path):
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    ledger = ledger_of(tmp_path)
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(b"this is a text file, not a database\n" * 10)
    expected = f"{ledger}: not a synthdistill harvest ledger (not an SQLite database); {HINT}"
    for stage in ("harvest", "filter"):
        _assert_message(run_cli(stage, "-c", str(config), cwd=tmp_path), 2, expected)


def test_a_foreign_sqlite_database_is_refused(tmp_path):
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    ledger = ledger_of(tmp_path)
    ledger.parent.mkdir(parents=True)
    with sqlite3.connect(ledger) as db:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, jpeg BLOB)")
    _assert_message(
        run_cli("harvest", "-c", str(config), cwd=tmp_path),
        2,
        f"{ledger}: not a synthdistill harvest ledger (it has no requests/migrations tables); {HINT}",
    )
    with sqlite3.connect(ledger) as db:  # left as it was
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["photos"]


def test_a_truncated_ledger_is_refused(tmp_path):
    with FakeOpenAIServer() as server:
        config = _harvested(tmp_path, server)
    ledger = ledger_of(tmp_path)
    data = ledger.read_bytes()
    ledger.write_bytes(data[: len(data) // 2])
    result = run_cli("filter", "-c", str(config), cwd=tmp_path)
    assert result.code == 2, result.err
    assert result.err.strip().startswith(f"error: {ledger}: the harvest ledger is truncated ({len(data) // 2} bytes")
    assert result.err.strip().endswith(HINT)


def test_a_ledger_with_garbage_pages_is_refused(tmp_path):
    with FakeOpenAIServer() as server:
        config = _harvested(tmp_path, server)
    ledger = ledger_of(tmp_path)
    data = bytearray(ledger.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # every page but the first overwritten
    ledger.write_bytes(bytes(data))
    result = run_cli("filter", "-c", str(config), cwd=tmp_path)
    assert result.code == 2, result.err
    assert result.err.strip().startswith(f"error: {ledger}: the harvest ledger is damaged (")
    assert "Traceback" not in result.err


def test_a_truncated_kept_parquet_names_its_file(tmp_path):
    with FakeOpenAIServer() as server:
        config = _harvested(tmp_path, server, 5)
    assert run_cli("filter", "-c", str(config), cwd=tmp_path).code == 0
    kept = tmp_path / "outputs" / "run" / "filtered" / "kept.parquet"
    data = kept.read_bytes()
    kept.write_bytes(data[: len(data) - 200])  # the footer cut off
    result = run_cli("build", "-c", str(config), cwd=tmp_path)
    _assert_message(
        result,
        2,
        f"{kept}: not a complete Parquet file (truncated or edited); "
        "run `synthdistill filter -c distill.yaml` again to rewrite it",
    )


def test_a_run_filtered_before_parquet_still_builds_and_a_truncated_kept_jsonl_names_its_line(tmp_path):
    with FakeOpenAIServer() as server:
        config = _harvested(tmp_path, server, 5)
    assert run_cli("filter", "-c", str(config), cwd=tmp_path).code == 0
    filtered = tmp_path / "outputs" / "run" / "filtered"
    legacy = filtered / "kept.jsonl"  # what the filter wrote before 12/2026
    legacy.write_text("".join(json.dumps(record) + "\n" for record in kept_records(filtered.parent)))
    (filtered / "kept.parquet").unlink()
    assert run_cli("build", "-c", str(config), cwd=tmp_path).code == 0
    text = legacy.read_text()
    legacy.write_text(text[: len(text) - 200])  # the last line cut off
    result = run_cli("build", "-c", str(config), cwd=tmp_path)
    _assert_message(
        result,
        2,
        f"{legacy}:5: not a complete record (the file is truncated or was edited); "
        "run `synthdistill filter -c distill.yaml` again to rewrite it",
    )


def _row_file(tmp_path, raw_row: str):
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    rows = tmp_path / "prompts" / "tiny" / "rows.jsonl"
    rows.write_text('{"q": "fine"}\n' + raw_row + "\n")
    return config, rows


def test_a_lone_surrogate_in_a_row_is_refused_by_harvest_validate_and_stats(tmp_path):
    config, rows = _row_file(tmp_path, '{"q": "bad \\ud800 here"}')
    expected = (
        f"{rows}:2: row.q holds a lone surrogate (U+D800) at character 4; "
        "remove it (prompts may not hold NUL or lone surrogates)"
    )
    _assert_message(run_cli("harvest", "-c", str(config), cwd=tmp_path), 2, expected)
    for command in ("validate", "stats"):
        result = run_cli("packs", command, str(rows.parent), cwd=tmp_path)
        assert result.code == 2, result.err
        assert expected in result.out + result.err
        assert "Traceback" not in result.err


def test_a_nul_in_a_row_is_refused_at_its_line(tmp_path):
    config, rows = _row_file(tmp_path, '{"q": "bad \\u0000 here"}')
    _assert_message(
        run_cli("harvest", "-c", str(config), cwd=tmp_path),
        2,
        f"{rows}:2: row.q holds a NUL character (U+0000) at character 4; "
        "remove it (prompts may not hold NUL or lone surrogates)",
    )


def test_invalid_utf8_in_a_row_names_its_line(tmp_path):
    config, rows = _row_file(tmp_path, "")
    rows.write_bytes(b'{"q": "fine"}\n{"q": "caf\xe9"}\n')
    _assert_message(
        run_cli("harvest", "-c", str(config), cwd=tmp_path),
        2,
        f"{rows}:2: not valid UTF-8 (byte 10 of the line); save the file as UTF-8",
    )


def test_ctrl_c_says_interrupted_and_exits_130_then_resumes(tmp_path):
    with FakeOpenAIServer(latency_s=0.2) as server:
        config = write_project(tmp_path, server.base_url, 30, teacher={"max_concurrency": 2})
        ledger = ledger_of(tmp_path)
        started = time.monotonic()
        process = start_cli("harvest", "-c", str(config), cwd=tmp_path, out=tmp_path / "first")
        while done_count(ledger) < 2:
            assert process.poll() is None and time.monotonic() - started < 30
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGINT)
        interrupted = finish(process, tmp_path / "first", started, timeout_s=30)
        resumed = run_cli("harvest", "-c", str(config), "--json", cwd=tmp_path)
    assert interrupted.code == 130, interrupted.err
    assert interrupted.err.strip().splitlines()[-1] == "error: interrupted; re-run to resume"
    assert "Traceback" not in interrupted.err
    assert resumed.code == 0
    assert json.loads(resumed.out)["already_done"] >= 2
    assert done_count(ledger) == 30


def test_control_characters_and_surrogate_escapes_in_distill_yaml_are_one_line_messages(tmp_path):
    # cases the fuzz pass found: each was a multi-line message or a UnicodeEncodeError traceback
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    good = config.read_text()
    for text, expected in (
        ("name: run\x00\n", f"{config}:1: invalid YAML: the character U+0000 is not allowed in YAML; remove it"),
        ("? '\n\n  '\n: null\n" + good, f"{config}:4: unknown key '\\n'; valid keys: "),
        (
            'filters:\n- "\\uD800"\n' + good,
            f"{config}:2: a lone surrogate (a \\uD800-\\uDFFF escape without its pair) is not text; remove it",
        ),
    ):
        config.write_text(text)
        result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
        assert result.code == 2, result.err
        assert len(result.err.strip().splitlines()) == 1, result.err
        assert result.err.strip().startswith(f"error: {expected}"), result.err


def test_an_answer_with_a_lone_surrogate_is_malformed_and_never_stored(tmp_path):
    # every prompt's first attempt answers "...\ud800": retried as malformed, then answered cleanly
    with FakeOpenAIServer(fail_first_n_per_prompt=1, fail_kinds=["surrogate"]) as server:
        config = write_project(tmp_path, server.base_url, 4)
        result = run_cli("harvest", "-c", str(config), "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["answered"] == 4 and summary["errors_by_kind"] == {"malformed": 4}
    with sqlite3.connect(ledger_of(tmp_path)) as db:
        texts = [json.loads(r[0])["text"] for r in db.execute("SELECT record FROM requests")]
    assert all("\ud800" not in t and t.startswith("Answer to: ") for t in texts)
