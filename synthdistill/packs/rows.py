"""Rows of a pack → `records.Prompt`s: the sandboxed Jinja2 template, the `variables:`
product, and rows that carry a whole conversation (`messages`).

Every function here raises `PackError` *without* a file or line; `packs` adds the
row's file and line, which only it knows.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import ValidationError

from synthdistill.errors import PackError
from synthdistill.packs.format import AnswerVerify, PackSpec, ToolCallVerify
from synthdistill.records import AnswerFormat, Message, Prompt, prompt_id_for


@functools.lru_cache(maxsize=1)
def template_environment() -> ImmutableSandboxedEnvironment:
    """The one Jinja2 environment of packs: sandboxed, and an undefined variable is an error."""
    # trim/lstrip_blocks: `{% if %}` lines in a block scalar leave no blank lines behind.
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False
    )


def combinations(variables: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of the `variables:` values, one at a time, the first variable varying slowest."""
    names = list(variables)
    return (dict(zip(names, values)) for values in itertools.product(*(variables[n] for n in names)))


def combination_count(variables: dict[str, list[Any]]) -> int:
    """How many prompts `variables:` makes, computed without making them."""
    return math.prod(len(values) for values in variables.values())


def prompt_for(
    spec: PackSpec, template: Template | None, row: Any, source: str, answer_format: AnswerFormat | None = None
) -> Prompt:
    """One row → one Prompt, or PackError saying what is wrong with the row.

    `answer_format` is the pack's tools / response format with their files read (packs.loading resolves it).
    """
    if not isinstance(row, dict):
        raise PackError(f"a row must be a JSON object, got {type(row).__name__}")
    if "messages" in row:
        messages = messages_from_row(spec.system, row["messages"])
        variables = {k: v for k, v in row.items() if k != "messages"}
    else:
        if template is None:
            raise PackError("row has no `messages` and the pack has no `template:` to render it with")
        content = render_row(template, row)
        messages = ([Message(role="system", content=spec.system)] if spec.system else []) + [
            Message(role="user", content=content)
        ]
        variables = dict(row)
    verify = spec.verify
    if isinstance(verify, AnswerVerify) and variables.get(verify.field) in (None, ""):
        raise PackError(f"row has no '{verify.field}' value, which verify.field names as the expected answer")
    if isinstance(verify, ToolCallVerify):
        if not isinstance(variables.get(verify.field), str) or not variables[verify.field]:
            raise PackError(f"row has no '{verify.field}' value, which verify.field names as the expected tool")
        if verify.arguments_field is not None and not isinstance(variables.get(verify.arguments_field), dict):
            raise PackError(
                f"row has no '{verify.arguments_field}' object, which verify.arguments_field names as the "
                "expected arguments"
            )
    return Prompt(
        prompt_id=prompt_id_for(spec.name, messages, answer_format),
        pack=spec.name,
        pack_version=spec.version,
        messages=messages,
        variables=variables,
        sampling_overrides=spec.sampling_overrides(),
        answer_format=answer_format,
        source=source,
    )


def render_row(template: Template, row: dict[str, Any]) -> str:
    """The user turn for `row`; an undefined variable names itself and the row's keys."""
    try:
        content = template.render(**row).strip()
    except UndefinedError as exc:
        missing = re.match(r"'([^']+)' is undefined", str(exc.message))
        if not missing:
            raise PackError(f"template cannot render this row: {exc.message}") from None
        name = missing.group(1)
        close = difflib.get_close_matches(name, list(row), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; add it to the row or fix the template"
        raise PackError(
            f"template uses '{name}', which this row does not have (row keys: {', '.join(row) or 'none'}){hint}"
        ) from None
    except TemplateError as exc:  # SecurityError included: the sandbox refused something
        raise PackError(f"template cannot render this row: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a user template can raise anything (e.g. 'a' + 1)
        raise PackError(f"template cannot render this row: {type(exc).__name__}: {exc}") from None
    if not content:
        raise PackError("row renders to an empty prompt")
    return content


def messages_from_row(system: str | None, raw: Any) -> list[Message]:
    """A row's own conversation (`{"messages": [...]}`), with the pack's system prompt first.

    Rules: optional system turn first, then user/assistant alternating, ending with a user
    turn (the one the teacher answers). An assistant turn may carry `tool_calls` (its content
    may then be empty); the `tool` turns that follow answer its calls (`tool_call_id` naming
    one), and the conversation may end on them (the teacher continues from the results).
    """
    if not isinstance(raw, list) or not raw:
        raise PackError("`messages` must be a non-empty list of {role, content}")
    messages = [_message(i, item) for i, item in enumerate(raw)]
    offset = 1 if messages[0].role == "system" else 0
    if offset and system:
        raise PackError("row has its own system message and the pack sets `system:`; keep one of them")
    turns = messages[offset:]
    expected = ("user",)
    open_calls: set[str | None] = set()
    for i, message in enumerate(turns):
        if message.role not in expected:
            wanted = " or ".join(f"'{r}'" for r in expected)
            raise PackError(
                f"messages[{i + offset}] is '{message.role}' where {wanted} belongs "
                "(turns alternate user/assistant; `tool` turns follow an assistant's tool_calls)"
            )
        if message.role == "tool" and message.tool_call_id is not None and message.tool_call_id not in open_calls:
            raise PackError(f"messages[{i + offset}].tool_call_id '{message.tool_call_id}' answers no earlier call")
        if message.role == "user":
            expected = ("assistant",)
        elif message.role == "assistant":
            open_calls = {call.id for call in message.tool_calls or []}
            expected = ("tool",) if message.tool_calls else ("user",)
        else:
            expected = ("tool", "assistant", "user")
    if not turns or turns[-1].role not in ("user", "tool"):
        raise PackError("`messages` must end with a user turn, or tool results (the teacher answers them)")
    return ([Message(role="system", content=system)] if system else []) + messages


def _message(i: int, item: Any) -> Message:
    """One turn of a row; tool-call arguments written as an object become its JSON text."""
    if isinstance(item, dict) and isinstance(item.get("tool_calls"), list):
        calls = []
        for call in item["tool_calls"]:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                arguments = call["function"].get("arguments")
                if isinstance(arguments, dict):
                    call = {**call, "function": {**call["function"], "arguments": json.dumps(arguments)}}
            calls.append(call)
        item = {**item, "content": item.get("content") or "", "tool_calls": calls}
    try:
        message = Message.model_validate(item)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise PackError(f"messages[{i}]{'.' + where if where else ''}: {err['msg']}") from None
    if not message.content.strip() and not message.tool_calls:
        raise PackError(f"messages[{i}] has empty content")
    if message.tool_calls and message.role != "assistant":
        raise PackError(f"messages[{i}] is '{message.role}'; only assistant turns carry tool_calls")
    return message
