"""The shipped JSON Schemas describe every key, and type each filter step's params."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from synthdistill.config import config_json_schema
from synthdistill.packs.format import pack_schema
from synthdistill.policy.format import policy_json_schema

SCHEMAS = Path(__file__).resolve().parent.parent / "synthdistill" / "schemas"


def undescribed(schema, where: str = "") -> list[str]:
    """Every property (in $defs and nested schemas too) that has no description."""
    found: list[str] = []
    if isinstance(schema, dict):
        for key, value in (schema.get("properties") or {}).items():
            if isinstance(value, dict) and not value.get("description"):
                found.append(f"{where}.{key}")
        for key, value in schema.items():
            found += undescribed(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            found += undescribed(value, f"{where}[{i}]")
    return found


@pytest.mark.parametrize("name", ["distill.schema.json", "pack.schema.json", "policy.schema.json"])
def test_every_key_of_every_shipped_schema_is_described(name):
    assert undescribed(json.loads((SCHEMAS / name).read_text())) == []


def test_the_walker_names_an_undescribed_key():
    schema = {
        "properties": {"a": {"type": "int"}},
        "$defs": {"X": {"properties": {"b": {"description": "d"}, "c": {}}}},
    }
    assert undescribed(schema) == [".a", "/$defs/X.c"]


def test_the_shipped_schemas_are_generated_from_the_models():
    assert json.loads((SCHEMAS / "distill.schema.json").read_text()) == config_json_schema()
    assert json.loads((SCHEMAS / "pack.schema.json").read_text()) == pack_schema()
    assert json.loads((SCHEMAS / "policy.schema.json").read_text()) == policy_json_schema()


BASE = {"name": "x", "teacher": {"model": "m", "base_url": "http://h/v1"}, "harvest": {"packs": ["p"]}}


@pytest.mark.parametrize(
    "step",
    [
        "finished",
        "refusal",
        "mypkg.quality:short",
        {"length": {"min_chars": 20, "max_tokens": 400}},
        {"dedup": None},
        {"decontaminate": {"against": ["held-out.jsonl"], "ngram": 8}},
        {"pii": {"action": "redact", "kinds": ["email"]}},
        {"mypkg.quality:min_words": {"words": 5}},
    ],
)
def test_the_schema_accepts_each_way_of_writing_a_filter_step(step):
    jsonschema.validate({**BASE, "filters": [step]}, config_json_schema())


@pytest.mark.parametrize(
    "step",
    [
        {"length": {"min_chars": "twenty"}},  # a wrongly typed param
        {"length": {"min_char": 20}},  # an unknown param
        {"pii": {"action": "blur"}},  # not one of the choices
        "decontaminate",  # `against` is required
        "no-such-filter",
        {"no-such-filter": {}},
        {"length": {}, "dedup": {}},  # two steps in one item
    ],
)
def test_the_schema_refuses_a_mistyped_filter_step(step):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**BASE, "filters": [step]}, config_json_schema())


def test_the_schema_shows_each_filters_params_with_their_types():
    items = config_json_schema()["properties"]["filters"]["items"]["anyOf"]
    length = next(o for o in items if "length" in o.get("properties", {}))["properties"]["length"]
    params = length["anyOf"][0]["properties"]
    assert params["min_chars"]["type"] == "integer"
    assert {t["type"] for t in params["max_tokens"]["anyOf"]} == {"integer", "null"}
    assert length["description"].startswith("length: ")
