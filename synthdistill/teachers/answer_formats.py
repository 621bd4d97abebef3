"""A pack's tools and structured answers (`records.AnswerFormat`) in each API style's form, and their checks.

Every chat dialect synthdistill speaks takes OpenAI's fields as they are: `tools` (function
definitions), `tool_choice` (auto / none / required / a named function) and `response_format`
(`{type: json_schema, json_schema: {name, schema, strict}}` or `{type: json_object}`): vLLM turns
`response_format` into guided decoding (structured outputs) and needs `--enable-auto-tool-choice
--tool-call-parser …` for `tool_choice: auto`; llama.cpp's server takes both (tools with `--jinja`);
Together and Ollama's OpenAI-compatible endpoints take them too. The legacy `/completions`
endpoint and the in-process transformers teacher have no such fields: a pack that sets them is
refused before anything is sent (`check_supported`), never silently sent without them.

A structured answer is checked as it lands (`structured_problem`): not JSON, or JSON that breaks
the schema, and the harvester asks again (harvest.structured_retries).
"""

from __future__ import annotations

import json
from typing import Any

from synthdistill.errors import ConfigError
from synthdistill.records import AnswerFormat, Prompt

# The answer-format fields each style's chat endpoint takes, as the body field it takes each as.
FORMAT_FIELDS: dict[str, dict[str, str]] = {
    style: {"tools": "tools", "tool_choice": "tool_choice", "response_format": "response_format"}
    for style in ("openai", "vllm", "llamacpp", "together", "ollama")
}


def format_fields(answer_format: AnswerFormat | None, style: str, endpoint: str = "chat") -> dict[str, Any]:
    """The body fields of a request's tools / tool_choice / response_format (none when the pack sets none)."""
    if answer_format is None:
        return {}
    taken = FORMAT_FIELDS.get(style, {}) if endpoint == "chat" else {}
    return {taken[key]: value for key, value in answer_format.key_fields().items() if key in taken}


def check_supported(prompts: list[Prompt], backend: str, endpoint: str, config_path=None) -> None:
    """Refuse (exit 2) packs with tools or a response_format for a teacher that cannot take them."""
    asking = next((p for p in prompts if p.answer_format is not None and p.answer_format.key_fields()), None)
    if asking is None:
        return
    keys = ", ".join(f"`{k}:`" for k in asking.answer_format.key_fields())
    if backend == "transformers":
        where = "the transformers backend (an in-process model) has no tool or structured-output fields"
    elif endpoint == "completions":
        where = "teacher.endpoint: completions (the legacy /completions API) has no tools or response_format"
    else:
        return
    raise ConfigError(
        f"pack '{asking.pack}' sets {keys}, but {where}; serve the teacher behind an OpenAI-compatible chat "
        "endpoint (vLLM, llama.cpp, …) or remove the key from the pack",
        file=config_path,
    )


def structured_problem(answer_format: AnswerFormat | None, text: str) -> str | None:
    """Why a structured answer is not valid (not JSON, or against the schema), or None when it is (or none is asked)."""
    schema = answer_format.schema if answer_format is not None else None
    if schema is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"not JSON: {getattr(exc, 'msg', exc)} at character {getattr(exc, 'pos', 0)}"
    from jsonschema import validators

    validator = validators.validator_for(schema)(schema)
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "top level"
    return f"against the schema at {where}: {error.message[:200]}"
