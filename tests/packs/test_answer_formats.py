"""Pack keys `tools`, `tool_choice`, `response_format`: validated (schemas too), rendered, part of the prompt id,
and rows that continue a conversation from assistant tool calls and tool results."""

from __future__ import annotations

import json

import pytest

from synthdistill import packs
from synthdistill.cli import main
from synthdistill.errors import PackError
from tests.packs_fixtures import write_pack

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}


def _error(folder) -> PackError:
    with pytest.raises(PackError) as info:
        packs.load_pack(folder)
    return info.value


def test_inline_tools_and_a_tools_file_load_the_same_and_change_the_prompt_id(tmp_path):
    inline = packs.load_pack(write_pack(tmp_path / "a", tools=[TOOL], tool_choice="auto"))
    folder = write_pack(tmp_path / "b", tools="tools.json", tool_choice="auto")
    (folder / "tools.json").write_text(json.dumps([TOOL]))
    from_file = packs.load_pack(folder)
    plain = packs.load_pack(write_pack(tmp_path / "c"))
    assert inline.answer_format == from_file.answer_format
    assert inline.answer_format.tools == [TOOL] and inline.answer_format.tool_choice == "auto"
    assert [p.prompt_id for p in inline.prompts] == [p.prompt_id for p in from_file.prompts]
    assert {p.prompt_id for p in inline.prompts}.isdisjoint(p.prompt_id for p in plain.prompts)
    assert all(p.answer_format is None for p in plain.prompts)


def test_response_format_schema_may_be_a_file_and_is_checked(tmp_path):
    folder = write_pack(
        tmp_path, response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": "schema.json"}}
    )
    (folder / "schema.json").write_text(json.dumps(SCHEMA))
    loaded = packs.load_pack(folder)
    assert loaded.answer_format.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }
    assert loaded.answer_format.schema == SCHEMA
    (folder / "schema.json").write_text(json.dumps({"type": "objekt"}))
    packs.loading._LOADED.clear()
    assert "not a valid JSON Schema" in _error(folder).message


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"tool_choice": "auto"}, "`tool_choice:` needs `tools:` to choose from"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice names 'nope', which is not among the tools (get_weather)",
        ),
        ({"tools": [TOOL, TOOL]}, "tool 'get_weather' is defined twice"),
        ({"tools": [TOOL], "tool_choice": "sometimes"}, "'tool_choice'"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}]},
            "not a valid JSON Schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "nah"}}}},
            "not a valid JSON Schema",
        ),
        ({"response_format": {"type": "xml"}}, "'response_format'"),
        ({"response_format": {"type": "json_object", "schema": {}}}, "unknown key 'response_format.schema'"),
        ({"tools": [TOOL], "response_format": {"type": "json_object"}}, "either `tools:` or `response_format:`"),
    ],
)
def test_bad_answer_format_keys_are_named(tmp_path, keys, message):
    error = _error(write_pack(tmp_path, **keys))
    assert message in error.message
    assert error.file.endswith("pack.yaml")


def test_rows_may_continue_from_tool_calls_and_tool_results(tmp_path):
    rows = [
        {
            "messages": [
                {"role": "user", "content": "Weather in Rome?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": {"city": "Rome"}},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
            ]
        }
    ]
    folder = write_pack(tmp_path, tools=[TOOL], rows=rows, template=None)
    (prompt,) = packs.load_pack(folder).prompts
    assert [m.model_dump() for m in prompt.messages[1:]] == [
        {"role": "user", "content": "Weather in Rome?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
            ],
        },
        {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "c1"},
    ]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([{"role": "user", "content": "a"}, {"role": "tool", "content": "x"}], "'tool' where 'assistant' belongs"),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c9", "content": "x"},
            ],
            "tool_call_id 'c9' answers no earlier call",
        ),
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "must end with a user turn, or tool results",
        ),
    ],
)
def test_bad_tool_turns_are_named(tmp_path, messages, message):
    folder = write_pack(tmp_path, rows=[{"messages": messages}], template=None)
    assert message in _error(folder).message


def test_packs_render_shows_tools_and_response_format(tmp_path, capsys):
    folder = write_pack(tmp_path, tools=[TOOL], tool_choice="required")
    assert main(["packs", "render", str(folder), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "[tool offered] get_weather: Weather now" in out
    assert '[tool_choice] "required"' in out
    folder = write_pack(tmp_path / "s", response_format={"type": "json_object"})
    assert main(["packs", "render", str(folder), "-n", "1"]) == 0
    assert '[response_format] {"type": "json_object"}' in capsys.readouterr().out
