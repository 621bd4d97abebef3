"""A pack's verifiers: answer (capture + numeric tolerance), json-schema, regex."""

from __future__ import annotations

import pytest

from synthdistill.packs.format import AnswerVerify, JsonSchemaVerify, RegexVerify
from synthdistill.packs.verifiers import extract_json, parse_number, verify_answer

ANSWER = {"kind": "answer", "field": "answer", "pattern": r"Answer:\s*\$?(-?[\d.,]*\d)"}


@pytest.mark.parametrize(
    "text, expected, passed",
    [
        ("2 + 3 = 5. Answer: 5", 5, True),
        ("Answer: 1,234", "1234", True),
        ("Answer: $12.50", 12.5, True),
        ("Answer: -3", -3, True),
        ("Answer: 6", 5, False),
        ("First guess Answer: 4, but really Answer: 5", 5, True),  # the last match counts
        ("Answer: 5", "5.0", True),
    ],
)
def test_answer_numbers(text, expected, passed):
    ok, reason = verify_answer(ANSWER, {"answer": expected}, text)
    assert ok is passed, reason


def test_answer_tolerance_and_reasons():
    spec = {**ANSWER, "tolerance": 0.01}
    ok, reason = verify_answer(spec, {"answer": 3.14159}, "Answer: 3.14")
    assert ok and reason == "answer 3.14 equals expected 3.14159"
    ok, reason = verify_answer(spec, {"answer": 3.2}, "Answer: 3.14")
    assert not ok and reason == "answer 3.14 != expected 3.2 (off by 0.06, tolerance 0.01)"
    assert verify_answer(spec, {"answer": 1}, "no final line") == (
        False,
        f"no match for /{spec['pattern']}/ in the answer",
    )
    assert verify_answer(spec, {}, "Answer: 1") == (False, "the row has no 'answer' field to compare with")


def test_answer_text_and_named_group():
    spec = AnswerVerify(kind="answer", field="city", pattern=r"(?:capital is|Answer:)\s*(?P<answer>[A-Za-z ]+)")
    assert verify_answer(spec, {"city": "Paris"}, "The capital is  paris.")[0] is True
    ok, reason = verify_answer(spec, {"city": "Paris"}, "Answer: Lyon")
    assert not ok and reason == "answer 'Lyon' != expected 'Paris'"


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name"],
}


def test_json_schema_bare_and_fenced():
    spec = {"kind": "json-schema", "schema": SCHEMA}
    assert verify_answer(spec, {}, '{"name": "Ada", "age": 36}') == (True, "JSON matches the schema")
    assert verify_answer(spec, {}, 'Here it is:\n```json\n{"name": "Ada"}\n```\nDone.')[0] is True
    ok, reason = verify_answer(spec, {}, '{"name": "Ada", "age": "old"}')
    assert not ok and reason == "JSON does not match the schema at $.age: 'old' is not of type 'integer'"
    ok, reason = verify_answer(spec, {}, "{}")
    assert not ok and reason == "JSON does not match the schema at $: 'name' is a required property"
    ok, reason = verify_answer(spec, {}, "I cannot do that.")
    assert not ok and reason.startswith("answer is not JSON: Expecting value")


def test_json_schema_file_reference_must_be_resolved_first():
    with pytest.raises(TypeError, match="load it with packs.load_pack"):
        verify_answer(JsonSchemaVerify(kind="json-schema", schema="schema.json"), {}, "{}")


def test_regex_search_and_full_match():
    assert verify_answer({"kind": "regex", "pattern": r"(?i)\byes\b"}, {}, "Well, YES.") == (
        True,
        r"answer matches /(?i)\byes\b/",
    )
    spec = RegexVerify(kind="regex", pattern=r"(yes|no)", full_match=True)
    assert verify_answer(spec, {}, "  no \n")[0] is True
    assert verify_answer(spec, {}, "no way") == (False, "answer does not fully match /(yes|no)/")


def test_bad_specs_are_rejected_when_parsed():
    with pytest.raises(ValueError, match="invalid regular expression"):
        verify_answer({"kind": "regex", "pattern": "("}, {}, "x")
    with pytest.raises(ValueError, match="needs a capture group"):
        verify_answer({"kind": "answer", "pattern": r"\d+"}, {"answer": 1}, "1")


@pytest.mark.parametrize(
    "value, number",
    [
        ("1,234.50", 1234.5),
        ("$12", 12.0),
        ("-3.", -3.0),
        ("7%", 7.0),
        (4, 4.0),
        (True, None),
        ("abc", None),
        ("inf", None),
        (None, None),
    ],
)
def test_parse_number(value, number):
    assert parse_number(value) == number


def test_extract_json():
    assert extract_json(" [1, 2] ") == ([1, 2], None)
    assert extract_json('```\n{"a": 1}\n```') == ({"a": 1}, None)
    assert extract_json("")[1] == "empty answer"
