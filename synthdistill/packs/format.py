"""pack.yaml as pydantic models (design §5): the single source of truth for the pack format.

The JSON Schema that editors use (`synthdistill/schemas/pack.schema.json`) is generated
from `PackSpec`; regenerate it with `python -m synthdistill.packs.format` after changing
a model here (a test fails while the shipped file is stale).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthdistill.errors import PackError
from synthdistill.records import MaxTokens, Sampling, Temperature, TopLogprobs, TopP
from synthdistill.yaml_source import YamlDocument, _allowed_keys, unknown_key_message

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "pack.schema.json"

# Licences of prompt collections seen in practice (SPDX ids). Anything else must be a
# `LicenseRef-<name>` so that a reviewer sees at once that it is a custom licence.
KNOWN_LICENCES = (
    "CC0-1.0",
    "PDDL-1.0",
    "Unlicense",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC-BY-NC-4.0",
    "CC-BY-NC-SA-4.0",
    "CC-BY-ND-4.0",
    "CC-BY-NC-ND-4.0",
    "ODC-By-1.0",
    "ODbL-1.0",
    "CDLA-Permissive-1.0",
    "CDLA-Permissive-2.0",
    "CDLA-Sharing-1.0",
    "Apache-2.0",
    "MIT",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "MPL-2.0",
    "GPL-2.0-only",
    "GPL-3.0-only",
    "LGPL-3.0-only",
    "AGPL-3.0-only",
    "GFDL-1.3-only",
)
LICENCE_REF = re.compile(r"^LicenseRef-[A-Za-z0-9.\-]+$")
# Semantic Versioning 2.0.0, the regex recommended at semver.org.
SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
PACK_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


class AnswerVerify(_Strict):
    """Capture the answer with `pattern` and compare it with the row's `field`."""

    kind: Literal["answer"] = Field(description="answer: compare a captured answer with the row's expected one")
    field: str = Field("answer", description="Row field holding the expected answer")
    pattern: str = Field(
        r"Answer:\s*\$?(-?[\d.,]*\d)",
        description="Regex whose first group (or group 'answer') captures the answer; the last match counts",
    )
    tolerance: float = Field(1e-6, ge=0, description="Largest accepted |answer - expected| for numbers")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        compiled = _compile(value)
        if compiled.groups < 1:
            raise ValueError(f"pattern {value!r} needs a capture group (…) around the answer")
        return value


class _WithSchema(_Strict):
    """A `schema` key: a JSON Schema inline (checked here) or a file relative to the pack (checked on load)."""

    schema_: dict[str, Any] | str = Field(
        alias="schema", description="A JSON Schema inline, or a .json/.yaml file relative to the pack folder"
    )

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(value, dict):
            check_json_schema(value)
        return value


class JsonSchemaVerify(_WithSchema):
    """The answer must be JSON (bare or in one ``` fence) valid against `schema`."""

    kind: Literal["json-schema"] = Field(description="json-schema: the answer must be JSON valid against `schema`")


class RegexVerify(_Strict):
    """The answer must match `pattern` (re.search; `(?i)` etc. for flags)."""

    kind: Literal["regex"] = Field(description="regex: the answer must match `pattern`")
    pattern: str = Field(description="Regular expression the answer must match")
    full_match: bool = Field(False, description="Require the whole answer (stripped) to match")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        _compile(value)
        return value


class ToolCallVerify(_Strict):
    """The answer must call the tool the row's `field` names (with the row's `arguments_field` arguments, if set)."""

    kind: Literal["tool-call"] = Field(description="tool-call: the answer must call the row's expected tool")
    field: str = Field("tool", description="Row field naming the function the answer must call")
    arguments_field: str | None = Field(
        None,
        description="Row field holding an object of arguments the call must have (each key equal; others allowed)",
    )


VerifySpec = Annotated[AnswerVerify | JsonSchemaVerify | RegexVerify | ToolCallVerify, Field(discriminator="kind")]
VERIFY_KINDS: dict[str, type[BaseModel]] = {
    "answer": AnswerVerify,
    "json-schema": JsonSchemaVerify,
    "regex": RegexVerify,
    "tool-call": ToolCallVerify,
}


TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class ToolFunction(_Strict):
    """A function the teacher may call (OpenAI's function-tool definition)."""

    name: str = Field(pattern=TOOL_NAME, description="Function name: letters, digits, '_' and '-', at most 64")
    description: str = Field("", description="What the function does; the teacher reads it to decide when to call")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the function's arguments (an object)",
    )
    strict: bool | None = Field(None, description="Ask the server to hold the arguments to the schema exactly")

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_schema(value)
        return value


class ToolSpec(_Strict):
    """One tool offered to the teacher: `{type: function, function: {name, description, parameters}}`."""

    type: Literal["function"] = Field("function", description="function: the only kind of tool")
    function: ToolFunction = Field(description="The function: name, description and parameters")


class NamedFunction(_Strict):
    name: str = Field(pattern=TOOL_NAME, description="Name of one of the pack's tools")


class NamedToolChoice(_Strict):
    """Force a call of one named tool."""

    type: Literal["function"] = Field("function", description="function")
    function: NamedFunction = Field(description="The tool the teacher must call")


class JsonSchemaFormatSpec(_WithSchema):
    name: str = Field(pattern=TOOL_NAME, description="Name of the schema (letters, digits, '_' and '-')")
    description: str | None = Field(None, description="What the answer holds (some servers pass it to the model)")
    strict: bool = Field(True, description="Ask the server to hold the answer to the schema exactly")


class JsonSchemaFormat(_Strict):
    """The answer must be JSON valid against a schema (guided decoding on vLLM, llama.cpp and the big APIs)."""

    type: Literal["json_schema"] = Field(description="json_schema: JSON valid against `json_schema.schema`")
    json_schema: JsonSchemaFormatSpec = Field(description="{name, schema, strict}")


class JsonObjectFormat(_Strict):
    """The answer must be one JSON object (any keys)."""

    type: Literal["json_object"] = Field(description="json_object: any JSON object")


ResponseFormatSpec = Annotated[JsonSchemaFormat | JsonObjectFormat, Field(discriminator="type")]


def check_json_schema(schema: dict[str, Any]) -> None:
    """Raise ValueError unless `schema` is itself a valid JSON Schema (for its declared draft)."""
    from jsonschema import SchemaError, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "top level"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None


def _no_default(schema: dict[str, Any]) -> None:
    """An absent key means "keep the harvest default", not null: hide the placeholder default."""
    schema.pop("default", None)


class PackSampling(_Strict):
    """Pack-level overrides of the harvest sampling defaults (keys of records.Sampling)."""

    # `float = None`: leaving a key out keeps the harvest default; writing `null` is an error.
    temperature: Temperature = Field(
        None, json_schema_extra=_no_default, description="Sampling temperature for this pack's prompts"
    )
    top_p: TopP = Field(
        None, json_schema_extra=_no_default, description="Nucleus sampling mass for this pack's prompts"
    )
    max_tokens: MaxTokens = Field(
        None, json_schema_extra=_no_default, description="Longest answer, in teacher tokens, for this pack's prompts"
    )
    top_logprobs: TopLogprobs = Field(
        None, json_schema_extra=_no_default, description="Alternatives captured per answer token; 0 = none"
    )
    seed: int | None = Field(None, description="Sampling seed for this pack's prompts (null = unseeded)")

    @model_validator(mode="after")
    def _same_rules_as_sampling(self) -> PackSampling:
        # records.Sampling is the authority; validating against it keeps both in step.
        try:
            Sampling(**self.overrides())
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"]) from None
        return self

    def overrides(self) -> dict[str, Any]:
        """Only the keys the pack sets."""
        return self.model_dump(exclude_unset=True)


class PackSpec(_Strict):
    """The whole of pack.yaml."""

    name: str = Field(pattern=PACK_NAME, description="Pack name; part of every prompt id")
    version: str = Field(pattern=SEMVER, description="Semantic version, e.g. 1.2.0")
    description: str = Field("", description="What the prompts are for, in a sentence (shown in cards and the audit)")
    licence: str = Field(description="Licence of the prompts: an SPDX id (CC0-1.0, CC-BY-4.0, …) or LicenseRef-…")
    source: str = Field("", description="Where the prompts come from: 'written for …', a citation or a URL")
    tags: list[str] = Field(default_factory=list, description="Free labels for finding the pack (`packs list`)")
    language: list[Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]] = Field(
        default_factory=list,
        description="Languages of the prompts, as ISO 639 codes (en, fr, pt-BR, …); the dataset cards' `language`",
    )
    system: str | None = Field(None, description="System prompt placed before every prompt")
    template: str | None = Field(
        None, description="Jinja2 template of the user turn (sandboxed; undefined variables are errors)"
    )
    rows: str | None = Field(
        None, description="JSONL file (relative to the pack) with one object of variables per line"
    )
    variables: dict[str, list[Any]] | None = Field(
        None, description="name → list of values; the template is rendered for every combination"
    )
    sampling: PackSampling | None = Field(None, description="Overrides of the harvest sampling defaults")
    verify: VerifySpec | None = Field(
        None, description="How to check an answer: answer, json-schema, regex or tool-call"
    )
    tools: list[ToolSpec] | str | None = Field(
        None, description="Tools the teacher may call: OpenAI function definitions inline, or a .json/.yaml file"
    )
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = Field(
        None, description="auto, none, required, or {type: function, function: {name}} to force one tool"
    )
    response_format: ResponseFormatSpec | None = Field(
        None,
        description="Structured answers: {type: json_schema, json_schema: {name, schema, strict}} or {type: json_object}",
    )

    @field_validator("licence")
    @classmethod
    def _licence(cls, value: str) -> str:
        if value in KNOWN_LICENCES or LICENCE_REF.match(value):
            return value
        close = difflib.get_close_matches(value, KNOWN_LICENCES, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(
            f"unknown licence '{value}'; {hint}use an SPDX id ({', '.join(KNOWN_LICENCES[:6])}, …) "
            "or LicenseRef-<name> for a custom licence"
        )

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        for name, values in (value or {}).items():
            if not values:
                raise ValueError(f"variable '{name}' has no values")
        return value

    @model_validator(mode="after")
    def _one_source_of_prompts(self) -> PackSpec:
        if self.rows is not None and self.variables is not None:
            raise ValueError("use either `rows:` or `variables:`, not both")
        if self.rows is None and self.variables is None:
            raise ValueError("a pack needs `rows:` (a JSONL file) or `variables:` (lists of values)")
        if self.variables is not None and self.template is None:
            raise ValueError("`variables:` needs a `template:` to render them into")
        if self.tool_choice is not None and self.tools is None:
            raise ValueError("`tool_choice:` needs `tools:` to choose from")
        if self.tools is not None and self.response_format is not None:
            raise ValueError("use either `tools:` or `response_format:`, not both (a tool call has no JSON answer)")
        if isinstance(self.tools, list):
            check_tool_choice(self.tools, self.tool_choice)
        return self

    def sampling_overrides(self) -> dict[str, Any]:
        return self.sampling.overrides() if self.sampling else {}


# members of a union that pydantic names in an error's location (the file has no such key)
UNION_TAGS = ("str", "NamedToolChoice")


def check_tool_choice(tools: list[ToolSpec], choice: Any) -> None:
    """Raise ValueError when a named `tool_choice` names no tool, or two tools share a name."""
    names = [tool.function.name for tool in tools]
    if not names:
        raise ValueError("`tools:` is empty; offer at least one tool or leave the key out")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"tool '{twice[0]}' is defined twice in `tools:`")
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise ValueError(
            f"tool_choice names '{choice.function.name}', which is not among the tools ({', '.join(names)})"
        )


def describe_spec_error(exc: ValidationError, doc: YamlDocument) -> tuple[str, int | None]:
    """The first pydantic error of pack.yaml as (message, line), with "did you mean" for unknown keys."""
    errors = exc.errors()
    # A misspelt key also makes the real key "missing": name the typo, which is the fix.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    parent_model: type[BaseModel] = PackSpec
    if len(loc) >= 2 and loc[0] == "verify" and loc[1] in VERIFY_KINDS:
        # pydantic puts the union tag in the location; the file has no such key.
        parent_model, loc = VERIFY_KINDS[loc[1]], ("verify",) + loc[2:]
    elif len(loc) >= 2 and loc[0] == "response_format" and loc[1] in ("json_schema", "json_object"):
        loc = loc[:1] + loc[2:]
    elif loc and loc[0] in ("tools", "tool_choice"):
        loc = tuple(p for p in loc if not (isinstance(p, str) and (p in UNION_TAGS or "[" in p)))
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        inner = loc[1:-1] if parent_model is not PackSpec else loc[:-1]
        message = unknown_key_message(dotted, str(loc[-1]), _allowed_keys(parent_model, inner))
    elif err["type"] == "missing":
        message = f"missing required key '{dotted}'"
    else:
        reason = err["msg"].removeprefix("Value error, ")
        message = f"'{dotted}': {reason}" if loc else reason
    return message, doc.line_of(loc)


# What `synthdistill packs new NAME` writes: every key explained, the optional ones
# commented out. `{schema}` becomes the path of the shipped JSON Schema, `{name}` the name.
STARTER_PACK_YAML = """\
# yaml-language-server: $schema={schema}
# A prompt pack: every row of rows.jsonl becomes one prompt for the teacher.
# Check it with `synthdistill packs validate <folder>`; see the prompts with `packs render`.

# The name is part of every prompt id: renaming a pack means harvesting it again.
name: {name}
version: 0.1.0                # semantic version; bump it when you change the prompts
description: "What these prompts teach the student."
licence: CC0-1.0              # licence of the prompts themselves: an SPDX id or LicenseRef-<name>
source: "written by hand"     # where the prompts come from: an author, a citation or a URL
tags: [starter]

# Sent before every prompt (leave it out for none).
system: "You are a helpful assistant. Answer clearly and concisely."

# The user turn, rendered for every row with Jinja2 (sandboxed). A variable that a row
# does not have is an error; test optional ones with `{{% if hint is defined %}}`.
template: |
  {{{{ question }}}}
  {{% if hint is defined %}}
  Hint: {{{{ hint }}}}
  {{% endif %}}

# One JSON object per line. A row may instead carry a whole conversation:
#   {{"messages": [{{"role": "user", "content": "…"}}, {{"role": "assistant", "content": "…"}}, {{"role": "user", "content": "…"}}]}}
rows: rows.jsonl

# Instead of rows: every combination of these values (a cartesian product).
# variables:
#   topic: [photosynthesis, plate tectonics]
#   audience: [a child, an expert]

# Override the harvest sampling defaults for this pack only.
# sampling: {{temperature: 0.2, max_tokens: 256}}

# Check each answer (the `verify` filter and `eval` use it). One of:
# verify: {{kind: answer, field: answer, pattern: "Answer:\\\\s*(-?[\\\\d.,]+)", tolerance: 0.01}}
# verify: {{kind: json-schema, schema: schema.json}}
# verify: {{kind: regex, pattern: "^(yes|no)\\\\b"}}

# Structured answers (the harvest checks each against the schema and asks again):
# response_format: {{type: json_schema, json_schema: {{name: answer, schema: schema.json}}}}
# Tools the teacher may call (OpenAI function definitions, or a file such as tools.json):
# tools: [{{type: function, function: {{name: get_weather, parameters: {{type: object, properties: {{city: {{type: string}}}}}}}}}}]
# tool_choice: auto
"""

STARTER_ROWS = [
    {"question": "Explain in two sentences why the sky is blue."},
    {"question": "Give three tips for writing a clear email.", "hint": "Think about the subject line."},
    {"question": "What is the difference between weather and climate?"},
]


def create_pack(name: str, parent_dir: Path) -> Path:
    """Write a commented starter pack `parent_dir/name/` (pack.yaml + rows.jsonl) that validates."""
    folder = Path(parent_dir) / name
    if not re.match(PACK_NAME, name):
        raise PackError(
            f"pack name '{name}' may hold only letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    if folder.exists():
        raise PackError("already exists; choose another name or remove it", file=folder)
    folder.mkdir(parents=True)
    # A relative schema path keeps working when the project moves with the tool beside it.
    try:
        schema = Path(os.path.relpath(SCHEMA_PATH, folder.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        schema = SCHEMA_PATH.as_posix()
    (folder / "pack.yaml").write_text(STARTER_PACK_YAML.format(schema=schema, name=name), encoding="utf-8")
    rows = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in STARTER_ROWS)
    (folder / "rows.jsonl").write_text(rows, encoding="utf-8")
    return folder


def pack_schema() -> dict[str, Any]:
    """The JSON Schema of pack.yaml, generated from `PackSpec`."""
    schema = PackSpec.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "synthdistill prompt pack (pack.yaml)",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def write_pack_schema(path: Path | None = None) -> Path:
    """Write the generated schema (default: the shipped file) and return its path."""
    path = path or SCHEMA_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(pack_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    write_pack_schema()
