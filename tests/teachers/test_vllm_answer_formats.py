"""A real vLLM server on this CPU with a pack's `response_format` and `tools` (skipped, with the reason, where it cannot run).

`response_format` is guided decoding (structured outputs): every answer is JSON valid for the
schema as it lands, so nothing is asked again. SmolLM2's chat template does not render tools,
so `tool_choice: auto` (the model would have to see the tools to call one) is not exercised; a
named `tool_choice` is: vLLM (started with `--enable-auto-tool-choice --tool-call-parser
pythonic`, which 0.32 needs for any tool_choice) forces the call's arguments to the
function's parameters by guided decoding and answers with `tool_calls`, which the records keep.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from synthdistill.cli import main
from tests.harvest_fixtures import ledger_of, ledger_rows, question, write_pack

pytestmark = pytest.mark.slow

N = 3
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}
TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}


def _project(tmp_path, server, pack_keys: dict) -> object:
    pack = write_pack(tmp_path / "prompts" / "tiny", [question(i) for i in range(N)])
    spec = yaml.safe_load((pack / "pack.yaml").read_text())
    (pack / "pack.yaml").write_text(yaml.safe_dump({**spec, **pack_keys}))
    config = {
        "name": "run",
        "teacher": {
            "backend": "openai",
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "base_url": server.base_url,
            "api_style": "vllm",
            "timeout_s": 180,
        },
        "harvest": {"packs": ["prompts/tiny"], "max_tokens": 64, "top_logprobs": 2, "temperature": 0.0},
    }
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _harvest(path, server, tmp_path, capsys) -> dict:
    rc = main(["harvest", "-c", str(path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    with sqlite3.connect(ledger_of(tmp_path)) as db:  # the server's own words on a rejected request
        errors = [row[0] for row in db.execute("SELECT error FROM requests WHERE status = 'failed'")]
    if rc != 0:
        pytest.fail(f"harvest exited {rc}; the server said: {errors[:1]}\n{server.log_tail(1500)}")
    return summary


def _records(tmp_path) -> list[dict]:
    return [json.loads(r[2]) for r in ledger_rows(ledger_of(tmp_path)) if r[1] == "done"]


def test_vllm_guided_decoding_answers_valid_json_for_the_schema(vllm_server, tmp_path, capsys):
    fmt = {"type": "json_schema", "json_schema": {"name": "sum", "schema": SCHEMA, "strict": True}}
    path = _project(tmp_path, vllm_server, {"response_format": fmt})
    summary = _harvest(path, vllm_server, tmp_path, capsys)
    assert (summary["answered"], summary["schema_invalid"]) == (N, 0)
    for record in _records(tmp_path):
        value = json.loads(record["text"])
        assert set(value) == {"answer"} and isinstance(value["answer"], int)
        assert record["schema_error"] is None and record["answer_format"]["response_format"] == fmt
        assert record["tokens"] and record["token_ids"]  # logprobs of the guided tokens, ids included


def test_vllm_named_tool_choice_answers_with_tool_calls_the_records_keep(vllm_server, tmp_path, capsys):
    choice = {"type": "function", "function": {"name": "add"}}
    path = _project(tmp_path, vllm_server, {"tools": [TOOL], "tool_choice": choice})
    summary = _harvest(path, vllm_server, tmp_path, capsys)
    assert (summary["answered"], summary["tool_calls"], summary["failed"]) == (N, N, 0)
    for record in _records(tmp_path):
        (call,) = record["tool_calls"]
        assert call["function"]["name"] == "add"
        arguments = json.loads(call["function"]["arguments"])
        assert set(arguments) == {"a", "b"} and all(isinstance(v, int) for v in arguments.values())
        assert record["tool_calls_span"] == [0, len(record["tokens"])]  # the call is every generated token
