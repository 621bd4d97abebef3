"""A pack's own check of an answer (design §5 `verify`): answer, json-schema or regex.

`verify_answer(spec, variables, text)` returns (passed, reason). It is pure and cheap:
the `verify` filter calls it on every harvested answer and `eval` on every generation
of the student. Compiled patterns and schema validators are cached.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

from pydantic import TypeAdapter

from synthdistill.packs.format import AnswerVerify, JsonSchemaVerify, RegexVerify, ToolCallVerify, VerifySpec

_SPEC_ADAPTER: TypeAdapter = TypeAdapter(VerifySpec)
# A fenced block, optionally tagged (```json … ```): teachers often wrap JSON this way.
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?```", re.DOTALL)
_NUMBER_NOISE = re.compile(r"[,\s$€£%]")


def parse_verify_spec(spec: Any) -> AnswerVerify | JsonSchemaVerify | RegexVerify | ToolCallVerify:
    """A verifier spec from its model or its dict form (as stored in manifests)."""
    if isinstance(spec, (AnswerVerify, JsonSchemaVerify, RegexVerify, ToolCallVerify)):
        return spec
    return _SPEC_ADAPTER.validate_python(spec)


def verify_answer(spec: Any, variables: dict[str, Any], text: str) -> tuple[bool, str]:
    """Check `text` (an answer) against a pack's verifier; `variables` is the prompt's row."""
    spec = parse_verify_spec(spec)
    if isinstance(spec, AnswerVerify):
        return _verify_expected(spec, variables, text)
    if isinstance(spec, JsonSchemaVerify):
        return _verify_json(spec, text)
    if isinstance(spec, ToolCallVerify):
        return _verify_tool_call(spec, variables, text)
    return _verify_regex(spec, text)


_DECODER = json.JSONDecoder()


def parse_calls(text: str) -> list[tuple[str, str]]:
    """(function name, arguments as written) of every call object in a text, in order.

    A call is any JSON object with a "name" and "arguments" (or "parameters"): Hermes/Qwen
    `<tool_call>{…}</tool_call>`, Llama 3.1's bare JSON, and a record's `calls_text` all are.
    """
    calls, at = [], 0
    while (start := text.find("{", at)) >= 0:
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            at = start + 1
            continue
        key = next((k for k in ("arguments", "parameters") if isinstance(value, dict) and k in value), None)
        if key is not None and isinstance(value.get("name"), str):
            calls.append((value["name"], _raw_value(text[start:end], key, value[key])))
            at = end
        else:
            at = start + 1
    return calls


def _raw_value(raw: str, key: str, value: Any) -> str:
    """The text of `key`'s value inside an object's raw text (re-written as JSON if it cannot be found)."""
    marker = raw.find(f'"{key}"')
    colon = raw.find(":", marker) if marker >= 0 else -1
    if colon >= 0:
        begin = len(raw) - len(raw[colon + 1 :].lstrip())
        try:
            _, end = _DECODER.raw_decode(raw, begin)
            return raw[begin:end]
        except ValueError:
            pass
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _verify_tool_call(spec: ToolCallVerify, variables: dict[str, Any], text: str) -> tuple[bool, str]:
    expected = variables.get(spec.field)
    calls = [c for c in parse_calls(text) if c[0] == expected]
    if not calls:
        return False, f"no call of '{expected}'"
    if spec.arguments_field is None:
        return True, "called"
    wanted = variables.get(spec.arguments_field) or {}
    for _, arguments in calls:
        try:
            given = json.loads(arguments)
        except ValueError:
            continue
        if isinstance(given, dict) and all(_same_value(given.get(k), v) for k, v in wanted.items()):
            return True, "called with the expected arguments"
    return False, f"'{expected}' called without the expected arguments {json.dumps(wanted, ensure_ascii=False)}"


def _same_value(given: Any, expected: Any) -> bool:
    """Equal, numbers by value and text case- and space-insensitively."""
    if isinstance(expected, str) and isinstance(given, str):
        return _normalise(given) == _normalise(expected)
    number = parse_number(given) if not isinstance(given, str) else None
    if isinstance(expected, (int, float)) and number is not None:
        return math.isclose(number, float(expected), rel_tol=1e-9, abs_tol=1e-9)
    return given == expected


def parse_number(value: Any) -> float | None:
    """A number from an answer or a row value: '1,234.50', '$12', '-3.', '7%' → float; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    cleaned = _NUMBER_NOISE.sub("", value).rstrip(".")
    try:
        number = float(cleaned)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _normalise(value: Any) -> str:
    return " ".join(str(value).split()).strip(" .").casefold()


def _captured(match: re.Match) -> str:
    if "answer" in match.re.groupindex:
        return match.group("answer")
    return match.group(1)


def _verify_expected(spec: AnswerVerify, variables: dict[str, Any], text: str) -> tuple[bool, str]:
    if spec.field not in variables:
        return False, f"the row has no '{spec.field}' field to compare with"
    expected = variables[spec.field]
    matches = list(_regex(spec.pattern).finditer(text))
    if not matches:
        return False, f"no match for /{spec.pattern}/ in the answer"
    # The last match counts: a worked solution may mention intermediate "answers".
    given = _captured(matches[-1])
    if given is None:
        return False, "the pattern matched but captured nothing"
    given_number, expected_number = parse_number(given), parse_number(expected)
    if given_number is not None and expected_number is not None:
        difference = abs(given_number - expected_number)
        if difference <= spec.tolerance:
            return True, f"answer {given.strip()} equals expected {expected}"
        return (
            False,
            f"answer {given.strip()} != expected {expected} (off by {difference:g}, tolerance {spec.tolerance:g})",
        )
    if _normalise(given) == _normalise(expected):
        return True, f"answer '{given.strip()}' equals expected '{expected}'"
    return False, f"answer '{given.strip()}' != expected '{expected}'"


def extract_json(text: str) -> tuple[Any, str | None]:
    """The JSON value of an answer: the whole text, else its first ``` fenced block.

    Returns (value, None) or (None, why it is not JSON).
    """
    candidates = [text.strip()]
    fence = _FENCE.search(text)
    if fence:
        candidates.append(fence.group(1).strip())
    error = "empty answer"
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return json.loads(candidate), None
        except json.JSONDecodeError as exc:
            error = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return None, error


def _verify_json(spec: JsonSchemaVerify, text: str) -> tuple[bool, str]:
    if not isinstance(spec.schema_, dict):
        raise TypeError(
            f"verifier schema '{spec.schema_}' is a file reference; load it with packs.load_pack, "
            "which resolves it relative to the pack"
        )
    value, error = extract_json(text)
    if error is not None:
        return False, f"answer is not JSON: {error}"
    validator = _validator(json.dumps(spec.schema_, sort_keys=True))
    problem = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
    if problem is None:
        return True, "JSON matches the schema"
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem.path)
    return False, f"JSON does not match the schema at {where}: {problem.message}"


def _verify_regex(spec: RegexVerify, text: str) -> tuple[bool, str]:
    pattern = _regex(spec.pattern)
    found = pattern.fullmatch(text.strip()) if spec.full_match else pattern.search(text)
    if found:
        return True, f"answer matches /{spec.pattern}/"
    how = "does not fully match" if spec.full_match else "does not match"
    return False, f"answer {how} /{spec.pattern}/"


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str):
    from jsonschema import validators

    schema = json.loads(schema_json)
    return validators.validator_for(schema)(schema)
