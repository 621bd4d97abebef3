"""Eval of tool and structured packs: reading the student's calls, matching them, and eval.json end to end."""

from __future__ import annotations

import json

import yaml

from synthdistill import build, evaluate, train
from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.eval_tools import call_match, parse_calls, teacher_calls
from tests.harvest_fixtures import write_pack
from tests.openai_server import FakeOpenAIServer, tool_call_text
from tests.test_build_tools import TOOLS, _project, _tool_student
from tests.test_harvest_tools import RESPONSE_FORMAT


def test_parse_calls_reads_hermes_blocks_and_bare_json_with_arguments_as_written():
    text = (
        tool_call_text("calculator", '{"expression": "2+2"}')
        + ' then {"name": "search", "parameters": {"q":  "x"}} and {"not": "a call"} {broken'
    )
    assert parse_calls(text) == [("calculator", '{"expression": "2+2"}'), ("search", '{"q":  "x"}')]
    assert parse_calls("no calls here") == []


def test_call_match_is_exact_or_by_json_equality():
    want = [("calculator", '{"expression": "2+2", "unit": null}')]
    assert call_match([("calculator", '{"expression": "2+2", "unit": null}')], want) == (True, True, True)
    assert call_match([("calculator", '{"unit": null,"expression":"2+2"}')], want) == (True, False, True)
    assert call_match([("calculator", '{"expression": "3"}')], want) == (True, False, False)
    assert call_match([("search", '{"expression": "2+2", "unit": null}')], want) == (False, False, False)
    assert call_match([], want) == (False, False, False)


def test_teacher_calls_come_from_the_final_turn_of_held_out_rows():
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    rows = [
        {
            "prompt_id": "p1",
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [call]}],
        },
        {"prompt_id": "p2", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ]
    assert teacher_calls(rows) == {"p1": [("f", '{"a": 1}')]}


def test_eval_json_has_tool_call_match_and_schema_valid_rate(tmp_path, tiny_student, tokenizer, capsys):
    import shutil

    student_dir = tmp_path / "student"
    shutil.copytree(tiny_student, student_dir)
    _tool_student(tokenizer, student_dir)  # the tiny model with a template that renders tools
    with FakeOpenAIServer() as server:
        path = _project(tmp_path, server, student_dir)
        config = yaml.safe_load(path.read_text())
        write_pack(tmp_path / "prompts" / "json", [f"Fact {i}: water is wet." for i in range(6)], name="json")
        json_pack = tmp_path / "prompts" / "json" / "pack.yaml"
        json_pack.write_text(
            yaml.safe_dump({**yaml.safe_load(json_pack.read_text()), "response_format": RESPONSE_FORMAT})
        )
        config["harvest"]["packs"].append("prompts/json")
        config["student"].update({"method": "sft", "max_steps": 2, "batch_size": 4})
        config["datasets"] = {"eval_fraction": 0.5, "seed": 1}  # held-out prompts of both packs
        path.write_text(yaml.safe_dump(config))
        assert main(["harvest", "-c", str(path)]) == 0
    assert main(["filter", "-c", str(path)]) == 0
    loaded = load_config(path)
    build.run(loaded)
    train.run(loaded)
    result = evaluate.run(loaded)
    capsys.readouterr()
    saved = json.loads(loaded.layout.eval_result.read_text())
    for label in ("untrained", "trained"):
        match = saved[label]["tool_call_match"]["tiny"]
        assert match["prompts"] >= 1
        # a 4-layer random student calls nothing after 2 steps: every share is 0, over every held-out call
        assert (match["same_function"], match["arguments_exact"], match["arguments_json_equal"]) == (0.0, 0.0, 0.0)
        assert saved[label]["schema_valid_rate"] == {"json": 0.0}
    assert result["trained"]["tool_call_match"] == saved["trained"]["tool_call_match"]
    assert TOOLS  # the tool pack offered the calculator
