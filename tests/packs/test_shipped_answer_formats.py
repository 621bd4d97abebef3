"""The shipped tool-use and json-extraction packs, and the tool-call verifier, against the loopback server."""

from __future__ import annotations

import json

import pytest
import yaml

from synthdistill import packs
from synthdistill.cli import main
from synthdistill.packs.format import ToolCallVerify
from synthdistill.packs.verifiers import verify_answer
from synthdistill.records import FunctionCall, ToolCall
from tests.filtered_fixtures import dropped_rows
from tests.harvest_fixtures import write_project
from tests.openai_server import FakeOpenAIServer
from tests.records_fixtures import make_record

SPEC = ToolCallVerify(kind="tool-call", field="tool", arguments_field="arguments")
ROW = {"tool": "convert_currency", "arguments": {"amount": 250, "from_currency": "eur", "to_currency": "JPY"}}


def _calls_text(name: str, arguments: str) -> str:
    record = make_record().model_copy(
        update={"text": "", "tool_calls": [ToolCall(function=FunctionCall(name=name, arguments=arguments))]}
    )
    return record.verifiable_text


@pytest.mark.parametrize(
    ("name", "arguments", "passed", "reason"),
    [
        ("convert_currency", '{"amount": 250.0, "from_currency": "EUR", "to_currency": "JPY"}', True, "called with"),
        ("convert_currency", '{"amount": 250, "from_currency": "EUR", "to_currency": "JPY", "x": 1}', True, "called"),
        (
            "convert_currency",
            '{"amount": 25, "from_currency": "EUR", "to_currency": "JPY"}',
            False,
            "'convert_currency' called without",
        ),
        # arguments that are not JSON make no call at all
        ("convert_currency", '{"amount": 250, "from_currency": "EUR"', False, "no call of 'convert_currency'"),
        ("get_weather", '{"city": "Tokyo"}', False, "no call of 'convert_currency'"),
    ],
)
def test_tool_call_verifier(name, arguments, passed, reason):
    result = verify_answer(SPEC, ROW, _calls_text(name, arguments))
    assert result[0] is passed and result[1].startswith(reason)


def test_tool_call_verifier_without_arguments_field_checks_the_name_only():
    spec = ToolCallVerify(kind="tool-call")
    assert verify_answer(spec, {"tool": "calculate"}, _calls_text("calculate", '{"expression": "1+1"}'))[0]
    assert not verify_answer(spec, {"tool": "calculate"}, "The answer is 2.")[0]


def test_shipped_packs_offer_tools_and_a_response_format():
    tool_use = packs.load_pack(packs.resolve_pack_path("tool-use", None))
    assert len(tool_use.prompts) == 30 and isinstance(tool_use.verify, ToolCallVerify)
    assert [t["function"]["name"] for t in tool_use.answer_format.tools] == [
        "get_weather",
        "convert_currency",
        "calculate",
        "create_reminder",
        "search_flights",
    ]
    continued = [p for p in tool_use.prompts if any(m.role == "tool" for m in p.messages)]
    assert len(continued) == 4
    extraction = packs.load_pack(packs.resolve_pack_path("json-extraction", None))
    fmt = extraction.answer_format.response_format
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == extraction.verify.schema_


def _project(tmp_path, server, pack: str, **harvest):
    path = write_project(tmp_path, server.base_url, 1, harvest={"packs": [pack], **harvest})
    config = yaml.safe_load(path.read_text())
    config["filters"] = ["finished", "verify"]
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_tool_use_pack_harvested_and_verified(tmp_path, capsys):
    # the loopback server calls the first tool offered (get_weather) with the whole request as its city
    with FakeOpenAIServer() as server:
        path = _project(tmp_path, server, "tool-use")
        assert main(["harvest", "-c", str(path), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
    assert (summary["answered"], summary["tool_calls"], summary["requests_sent"]) == (30, 30, 30)
    assert main(["filter", "-c", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    verify_step = next(step for step in report["steps"] if step["name"] == "verify")
    assert verify_step["input"] == 30 and verify_step["dropped"] == 30
    dropped = dropped_rows(tmp_path / "outputs/run")
    reasons = [d["reason"] for d in dropped]
    assert sum("'get_weather' called without the expected arguments" in r for r in reasons) == 7
    assert sum(r.startswith("verifier-failed: no call of") for r in reasons) == 23


def test_the_json_extraction_pack_asks_again_then_drops_answers_against_its_schema(tmp_path, capsys):
    # the loopback server's JSON ({"answer", "words"}) is not an extraction: every answer breaks the schema
    with FakeOpenAIServer() as server:
        path = _project(tmp_path, server, "json-extraction", limit=3, structured_retries=1)
        assert main(["harvest", "-c", str(path), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        sent = server.stats()["last_request"]["body"]
    assert sent["response_format"]["json_schema"]["name"] == "extraction"
    assert (summary["answered"], summary["schema_retries"], summary["schema_invalid"]) == (3, 3, 3)
    assert summary["requests_sent"] == 6
    assert main(["filter", "-c", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema_invalid"] == 3 and report["kept"] == 0
    assert report["drop_reasons"] == {"schema:schema": 3}
