"""Tools and structured answers through a real harvest against the loopback server.

The server calls a tool when a request offers tools (content null, `tool_calls`, finish_reason
tool_calls) and answers JSON when a request sets a response_format, broken off mid-object for
the seeds and prompts a test names.
"""

from __future__ import annotations

import json
import sqlite3

import yaml

from synthdistill.cli import main
from synthdistill.records import AnswerFormat, Message, Sampling, request_key_for
from tests.filtered_fixtures import dropped_rows
from tests.harvest_fixtures import ledger_of, ledger_rows, question, write_project
from tests.openai_server import FakeOpenAIServer, split_tokens, structured_text, tool_call_text

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic question",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    }
]
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "words": {"type": "integer"}},
    "required": ["answer", "words"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}


def _project(tmp_path, server, n: int = 4, pack_keys: dict | None = None, harvest: dict | None = None, teacher=None):
    config = write_project(tmp_path, server.base_url, n_prompts=n, harvest=harvest, teacher=teacher)
    pack_file = tmp_path / "prompts" / "tiny" / "pack.yaml"
    spec = yaml.safe_load(pack_file.read_text())
    pack_file.write_text(yaml.safe_dump({**spec, **(pack_keys or {})}, sort_keys=False))
    return config


def _harvest(capsys, config, *extra: str):
    rc = main(["harvest", "-c", str(config), "--json", *extra])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out) if captured.out.strip() else None, captured.err


def _records(tmp_path) -> list[dict]:
    return [json.loads(r[2]) for r in ledger_rows(ledger_of(tmp_path)) if r[1] == "done"]


def _schema_failures(tmp_path) -> list[tuple]:
    db = sqlite3.connect(ledger_of(tmp_path))
    try:
        return list(
            db.execute("SELECT request_key, attempt, seed, reason FROM schema_failures ORDER BY request_key, attempt")
        )
    finally:
        db.close()


def test_tool_call_answers_are_kept_once_with_calls_span_and_finish_reason(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = _project(tmp_path, server, pack_keys={"tools": TOOLS, "tool_choice": "auto"})
        rc, summary, err = _harvest(capsys, config)
        sent = server.stats()["last_request"]["body"]
        requests = server.stats()["requests"]
    assert rc == 0, err
    assert summary["answered"] == 4 and summary["tool_calls"] == 4 and summary["failed"] == 0
    assert requests == 4  # a tool call (content null) is an answer, not a malformed one retried
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto"
    records = sorted(_records(tmp_path), key=lambda r: r["messages"][-1]["content"])
    for record in records:
        prompt = record["messages"][-1]["content"]
        arguments = json.dumps({"expression": prompt})
        assert record["text"] == ""
        assert record["finish_reason"] == "tool_calls"
        assert [(c["function"]["name"], c["function"]["arguments"]) for c in record["tool_calls"]] == [
            ("calculator", arguments)
        ]
        tokens = split_tokens(tool_call_text("calculator", arguments))
        assert record["tokens"] == tokens
        assert record["tool_calls_span"] == [0, len(tokens)]
        assert record["answer_format"]["tools"] == TOOLS


def test_a_named_tool_choice_is_sent_and_followed(tmp_path, capsys):
    tools = TOOLS + [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    choice = {"type": "function", "function": {"name": "search"}}
    with FakeOpenAIServer() as server:
        config = _project(tmp_path, server, n=2, pack_keys={"tools": tools, "tool_choice": choice})
        rc, summary, err = _harvest(capsys, config)
        sent = server.stats()["last_request"]["body"]
    assert rc == 0, err
    assert sent["tool_choice"] == choice
    assert {r["tool_calls"][0]["function"]["name"] for r in _records(tmp_path)} == {"search"}


def test_broken_json_is_asked_again_with_the_next_unused_seed_and_each_failure_is_in_the_ledger(tmp_path, capsys):
    # prompts 1 and 3 break off at seed 0 (their first answer); the re-ask (seed 0 + 1 x samples) is whole
    with FakeOpenAIServer(json_broken_seeds=[0], json_broken_match="Question 1:") as server:
        config = _project(tmp_path, server, pack_keys={"response_format": RESPONSE_FORMAT})
        rc, summary, err = _harvest(capsys, config)
        sent = server.stats()["last_request"]["body"]
    assert rc == 0, err
    assert sent["response_format"] == RESPONSE_FORMAT
    assert summary["answered"] == 4
    assert (summary["schema_retries"], summary["schema_invalid"]) == (1, 0)
    records = {r["messages"][-1]["content"]: r for r in _records(tmp_path)}
    retried = records[question(1)]
    assert retried["text"] == structured_text(question(1))
    assert (retried["schema_retries"], retried["schema_error"], retried["sampling"]["seed"]) == (1, None, 1)
    assert retried["attempts"] == 2
    assert records[question(0)]["schema_retries"] == 0 and records[question(0)]["sampling"]["seed"] == 0
    failures = _schema_failures(tmp_path)
    assert [(f[0], f[1], f[2]) for f in failures] == [(retried["request_key"], 1, 0)]
    assert failures[0][3].startswith("not JSON: ")


def test_json_never_valid_is_stored_invalid_and_the_filter_drops_it_with_reason_schema(tmp_path, capsys):
    with FakeOpenAIServer(json_broken_seeds=[0, 1, 2, 3], json_broken_match="Question 2:") as server:
        config = _project(
            tmp_path, server, pack_keys={"response_format": RESPONSE_FORMAT}, harvest={"structured_retries": 2}
        )
        rc, summary, err = _harvest(capsys, config)
        requests = server.stats()["requests"]
    assert rc == 0, err
    assert (summary["answered"], summary["schema_retries"], summary["schema_invalid"]) == (4, 2, 1)
    assert requests == 4 + 2
    bad = next(r for r in _records(tmp_path) if r["messages"][-1]["content"] == question(2))
    assert bad["schema_error"].startswith("not JSON") and bad["schema_retries"] == 2
    assert [f[1:3] for f in _schema_failures(tmp_path)] == [(1, 0), (2, 1), (3, 2)]
    # a re-run sends nothing: the invalid answer is done
    rc, again, _ = _harvest(capsys, config)
    assert rc == 0 and again["requests_sent"] == 0
    assert main(["filter", "-c", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema_invalid"] == 1 and report["kept"] == 3
    dropped = dropped_rows(tmp_path / "outputs/run")
    assert [(d["filter"], d["reason"].split(": ")[0]) for d in dropped] == [("schema", "schema")]


def test_schema_violations_are_reasons_too(tmp_path, capsys):
    strict = {**SCHEMA, "properties": {**SCHEMA["properties"], "words": {"type": "integer", "maximum": 2}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": strict}}
    with FakeOpenAIServer() as server:
        config = _project(tmp_path, server, n=1, pack_keys={"response_format": fmt}, harvest={"structured_retries": 0})
        rc, summary, err = _harvest(capsys, config)
    assert rc == 0, err
    assert summary["schema_invalid"] == 1 and summary["schema_retries"] == 0
    (record,) = _records(tmp_path)
    assert record["schema_error"].startswith("against the schema at words: ")


def test_the_completions_endpoint_is_refused_up_front_for_tools(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = _project(tmp_path, server, pack_keys={"tools": TOOLS}, teacher={"endpoint": "completions"})
        rc, _, err = _harvest(capsys, config)
        requests = server.stats()["requests"]
    assert rc == 2 and requests == 0
    assert "pack 'tiny' sets `tools:`" in err and "completions" in err


def test_request_keys_of_plain_packs_are_unchanged_and_an_answer_format_changes_them():
    messages = [Message(role="user", content="hi")]
    sampling = Sampling()
    plain = request_key_for("m", messages, sampling, 0)
    assert request_key_for("m", messages, sampling, 0, AnswerFormat()) == plain
    assert request_key_for("m", messages, sampling, 0, AnswerFormat(tools=TOOLS)) != plain
    # a plain turn dumps as before: {role, content}
    assert messages[0].model_dump() == {"role": "user", "content": "hi"}


def test_the_in_process_teacher_is_refused_for_a_response_format():
    import pytest

    from synthdistill.errors import ConfigError
    from synthdistill.records import Prompt
    from synthdistill.teachers.answer_formats import check_supported

    prompt = Prompt(
        prompt_id="p",
        pack="json",
        pack_version="1.0.0",
        messages=[Message(role="user", content="hi")],
        answer_format=AnswerFormat(response_format={"type": "json_object"}),
    )
    check_supported([prompt], "openai", "chat")  # a chat endpoint takes it
    with pytest.raises(ConfigError, match="pack 'json' sets `response_format:`, but the transformers backend"):
        check_supported([prompt], "transformers", "chat")


def test_the_summary_lines_count_tool_calls_and_re_asks(tmp_path, capsys):
    with FakeOpenAIServer(json_broken_seeds=[0], json_broken_match="Question 1:") as server:
        config = _project(tmp_path, server, pack_keys={"response_format": RESPONSE_FORMAT})
        assert main(["harvest", "-c", str(config)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "structured answers: 1 asked again (not valid for their schema), 0 still invalid" in out
    with FakeOpenAIServer() as server:
        config = _project(tmp_path / "tools", server, pack_keys={"tools": TOOLS})
        assert main(["harvest", "-c", str(config)]) == 0
    assert "4 answers called a tool" in capsys.readouterr().out
