"""Tool calls in datasets and training: the SFT row's shape, the student's rendering of a call, its check.

An SFT row of a tool pack carries the pack's tools in a `tools` column and the teacher's calls on
the final assistant message (`tool_calls`, OpenAI's shape), which is what TRL's SFTTrainer and
transformers chat templates take: loaded with `datasets.load_dataset`, a call's `arguments` and
each tool are JSON objects (Parquet stores them as Arrow JSON: the exact text the teacher wrote).

What the student learns for a call is its own chat template's rendering of the assistant turn
(Qwen's `<tool_call>{…}</tool_call>`, Llama's JSON, …), found by rendering the conversation with
and without the turn; the loss covers that turn alone, never a `tool` result or user turn (they
are the prompt). A student whose template does not render tools cannot learn them: `build`
refuses it (`check_renders_tools`) rather than train on calls the student never sees.
"""

from __future__ import annotations

import json
from typing import Any

from synthdistill.alignment import align_answer
from synthdistill.errors import ConfigError
from synthdistill.records import HarvestRecord

_MARKER = "synthdistill-tool-marker-5c1e"
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": _MARKER,
        "description": "probe",
        "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
    },
}


def has_tools(records: list[HarvestRecord]) -> bool:
    """Whether any record offers tools or holds tool calls (its SFT rows then get the tool columns)."""
    return any(_record_tools(r) is not None or r.tool_calls or _calls_in_prompt(r) for r in records)


def _record_tools(record: HarvestRecord) -> list[dict[str, Any]] | None:
    return record.answer_format.tools if record.answer_format is not None else None


def _calls_in_prompt(record: HarvestRecord) -> bool:
    return any(m.tool_calls or m.role == "tool" for m in record.messages)


def stored_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the SFT Parquet stores it: every tool key present (null when unused)."""
    return {"tool_calls": None, "tool_call_id": None, "name": None, **message}


def sft_tool_fields(record: HarvestRecord) -> dict[str, Any]:
    """The `tools` column of a record's SFT row (each tool as JSON text; null without tools)."""
    tools = _record_tools(record)
    return {"tools": [json.dumps(t, ensure_ascii=False) for t in tools] if tools is not None else None}


def final_calls(record: HarvestRecord) -> list[dict[str, Any]] | None:
    """The teacher's calls as the final assistant message's `tool_calls` (arguments: the exact text)."""
    return [c.model_dump() for c in record.tool_calls] if record.tool_calls else None


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored messages as chat templates take them: null keys left out, call arguments as objects."""
    out = []
    for message in messages:
        message = {k: v for k, v in message.items() if v is not None}
        if message.get("tool_calls"):
            message["tool_calls"] = [_template_call(c) for c in message["tool_calls"]]
        out.append(message)
    return out


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call["function"])
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments)
        except ValueError:
            pass  # not JSON: the template gets the text as the teacher wrote it
    return {k: v for k, v in {**call, "function": function}.items() if v is not None}


def template_tools(tools: list[Any] | None) -> list[dict[str, Any]] | None:
    """The `tools` column (JSON text per tool, or objects) as chat templates take it; None without tools."""
    if not tools:
        return None
    return [json.loads(t) if isinstance(t, str) else t for t in tools]


def tool_turn_text(
    tokenizer: Any, prompt_messages: list[dict[str, Any]], message: dict[str, Any], tools: list[dict] | None
) -> str | None:
    """The text the student learns for a final assistant turn with tool calls, in its template's words.

    The turn rendered after the prompt (with its generation prompt), less the end-of-turn text the
    template writes after every assistant turn (answer_token_ids adds the student's stop token).
    None when the template renders the conversation inconsistently (the prompt is not a prefix).
    """
    prompt = template_messages(prompt_messages)
    turn = template_messages([message])[0]
    head = tokenizer.apply_chat_template(prompt, tools=tools, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template([*prompt, turn], tools=tools, tokenize=False)
    if not full.startswith(head):
        return None
    text = full[len(head) :]
    plain = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": _MARKER}], tools=tools, tokenize=False
    )
    ending = plain[plain.find(_MARKER) + len(_MARKER) :] if _MARKER in plain else ""
    if ending and text.endswith(ending):
        text = text[: -len(ending)]
    return text.rstrip("\n") if text.strip() else None


def renders_tools(tokenizer: Any) -> bool:
    """Whether the student's chat template shows offered tools and an assistant's call (tried, not guessed)."""
    call = {"type": "function", "function": {"name": _MARKER + "-call", "arguments": {"x": "y"}}}
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    try:
        text = tokenizer.apply_chat_template(turns, tools=[_PROBE_TOOL], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render tools does not render them
        return False
    return _MARKER in text.replace(_MARKER + "-call", "") and _MARKER + "-call" in text


def check_renders_tools(tokenizer: Any, student_model: str, config_path=None) -> None:
    """Refuse (exit 2) a student whose chat template cannot render tools, saying how to give it one."""
    if renders_tools(tokenizer):
        return
    source = "its chat_template" if getattr(tokenizer, "chat_template", None) else "no chat template at all"
    raise ConfigError(
        f"the student '{student_model}' has {source}, which does not render tools or tool calls, so it "
        "could not learn the teacher's calls; give it a template that does (Qwen2.5's, Qwen3's or Llama 3.1's "
        "render `tools` and `tool_calls`): save it as chat_template.jinja in the student's model folder, "
        "or choose a student whose template renders tools",
        file=config_path,
    )


def tool_call_targets(record: HarvestRecord, tokenizer: Any, mapper, max_unmapped_mass: float):
    """KD targets for a tool-calling answer: the teacher's call tokens aligned to the student's rendering of the turn.

    Where the two renderings agree (a student of the teacher's family writes calls the same way) every
    token gets targets; from the first difference on, positions are masked. None when the student's
    template renders no turn, or the answer also holds a trace (its tokens are not the turn's).
    """
    if record.reasoning is not None or record.tokens is None:
        return None
    messages = [m.model_dump() for m in record.messages]
    final = {"role": "assistant", "content": record.text, "tool_calls": final_calls(record)}
    text = tool_turn_text(tokenizer, messages, final, _record_tools(record))
    if text is None:
        return None
    return align_answer(
        text,
        record.tokens,
        record.token_logprobs,
        record.top_tokens,
        record.top_logprobs,
        tokenizer,
        max_unmapped_mass=max_unmapped_mass,
        single_token_id=mapper,
    )
