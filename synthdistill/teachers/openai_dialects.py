"""What OpenAI-compatible servers differ in: how logprobs are asked for, which endpoint, how answers read.

`teacher.api_style` names the server's dialect (see ../shared/licences.md, "Logprobs by backend"):

    openai, llamacpp, ollama   chat: `logprobs: true, top_logprobs: k`; completions: `logprobs: k`
    vllm                       the same plus `return_tokens_as_token_ids: true` ("token_id:123" tokens → ids)
    llamacpp                   also switches off llama.cpp's own samplers (`LLAMACPP_NEUTRAL`)
    together                   `logprobs: k` (an integer, not a boolean) on both endpoints

llama.cpp ignores `n > 1`, so every request asks for one choice (`n: 1`) and the
harvester sends one request per sample. `auto` is resolved by the teacher: Together's
hosts → together; a `/models` listing that says `owned_by: vllm` → vllm, `me`
(llama-cpp-python) or `llamacpp` (llama-server) → llamacpp; else openai.
The answer's logprob shape is detected, not assumed (`parse_logprobs`), so a wrong
style costs token ids at worst, never a misread answer.

`teacher.endpoint: completions` sends the legacy `/completions` request to servers
that have no chat endpoint; the messages become one plain-text prompt (`render_prompt`).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from synthdistill.errors import RetryableTeacherError
from synthdistill.records import Completion, FunctionCall, Message, TeacherRequest, ToolCall, Usage
from synthdistill.teachers.answer_formats import format_fields
from synthdistill.teachers.knobs import KnobWarnings, knob_fields, knob_values
from synthdistill.teachers.logprob_formats import LogprobFormatError, keep_top, parse_logprobs
from synthdistill.thinking import answer_parts, split_inline

__all__ = ["KnobWarnings", "knob_fields", "knob_values"]

STYLES = ("openai", "vllm", "llamacpp", "together", "ollama")
API_STYLES = ("auto", *STYLES)
ENDPOINTS = ("chat", "completions")
TOGETHER_HOSTS = ("together.xyz", "together.ai")
OWNERS = {"vllm": "vllm", "me": "llamacpp", "llamacpp": "llamacpp"}
# llama.cpp applies a repeat penalty (1.1), top-k (40) and min-p (0.05) unless told not to:
# the answers would then not be samples of the distribution its logprobs describe
LLAMACPP_NEUTRAL = {"repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0}
# where servers put a parsed reasoning trace, first found wins
REASONING_FIELDS = ("reasoning", "reasoning_content")


def style_for_host(base_url: str) -> str | None:
    """The dialect a base URL's host alone gives away (Together's API), or None."""
    host = (httpx.URL(base_url).host or "").lower()
    return "together" if any(host == h or host.endswith("." + h) for h in TOGETHER_HOSTS) else None


def style_from_models(payload: Any) -> str:
    """The dialect a `GET /models` answer reveals by its first model's `owned_by` (`OWNERS`); else openai."""
    data = payload.get("data") if isinstance(payload, dict) else None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    return OWNERS.get(str(first.get("owned_by")), "openai")


def logprob_fields(k: int, style: str, endpoint: str = "chat") -> dict[str, Any]:
    """The request fields that ask for the top-`k` logprobs of every generated token (none when k is 0)."""
    if k <= 0:
        return {}
    if style == "together" or endpoint == "completions":
        fields: dict[str, Any] = {"logprobs": k}  # an integer: Together, and every legacy /completions
    else:
        fields = {"logprobs": True, "top_logprobs": k}
    if style == "vllm":
        fields["return_tokens_as_token_ids"] = True
    return fields


def _sampling_fields(model: str, request: TeacherRequest) -> dict[str, Any]:
    sampling = request.sampling
    body: dict[str, Any] = {
        "model": model,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "n": 1,  # llama.cpp ignores n > 1: one request per sample everywhere
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    return body


def _dialect_fields(style: str) -> dict[str, Any]:
    return dict(LLAMACPP_NEUTRAL) if style == "llamacpp" else {}


def build_chat_body(model: str, request: TeacherRequest, style: str = "openai") -> dict[str, Any]:
    """The JSON body of one chat completions request; `style` decides how logprobs are asked for."""
    body = _sampling_fields(model, request)
    body["messages"] = [m.model_dump() for m in request.messages]
    body.update(_dialect_fields(style))
    body.update(logprob_fields(request.sampling.top_logprobs, style, "chat"))
    body.update(knob_fields(request.sampling, style, "chat")[0])
    body.update(format_fields(request.answer_format, style, "chat"))
    return body


def render_prompt(messages: list[Message]) -> str:
    """Messages as one plain-text prompt for /completions.

    A lone user message is sent as it is (the common case: a base model continuing a
    prompt); a conversation becomes "Role: content" paragraphs ending in "Assistant:".
    """
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content
    turns = [f"{m.role.capitalize()}: {m.content}" for m in messages]
    return "\n\n".join([*turns, "Assistant:"])


def build_completions_body(model: str, request: TeacherRequest, style: str = "openai") -> dict[str, Any]:
    """The JSON body of one legacy completions request."""
    body = _sampling_fields(model, request)
    body["prompt"] = render_prompt(request.messages)
    body.update(_dialect_fields(style))
    body.update(logprob_fields(request.sampling.top_logprobs, style, "completions"))
    return body


def build_body(model: str, request: TeacherRequest, style: str, endpoint: str) -> dict[str, Any]:
    """The request body for `endpoint` ("chat" or "completions")."""
    if endpoint == "completions":
        return build_completions_body(model, request, style)
    return build_chat_body(model, request, style)


def endpoint_path(endpoint: str) -> str:
    """The path after the base URL."""
    return "/completions" if endpoint == "completions" else "/chat/completions"


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def malformed(message: str) -> RetryableTeacherError:
    """The error for an answer that cannot be read (the harvester retries it)."""
    return RetryableTeacherError("malformed", message)


def _first_choice(payload: Any, source: str) -> dict:
    if not isinstance(payload, dict):
        raise malformed(f"{source} is a JSON {type(payload).__name__}, expected an object")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        detail = payload.get("error")
        raise malformed(f"{source} has no choices" + (f" (error: {str(detail)[:200]})" if detail else ""))
    return choices[0]


def _reasoning_field(message: dict) -> str | None:
    """The parsed trace: `reasoning` (vLLM ≥ 0.11, OpenRouter, Together, Ollama) or `reasoning_content`."""
    for key in REASONING_FIELDS:
        value = message.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _tool_calls(message: dict, source: str) -> list[ToolCall] | None:
    """A chat message's `tool_calls`, arguments kept as the exact string sent (an object is written as JSON)."""
    raw = message.get("tool_calls")
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise malformed(f"{source}: choices[0].message.tool_calls is not a list")
    calls = []
    for i, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise malformed(f"{source}: choices[0].message.tool_calls[{i}] names no function")
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # Ollama's native shape
            arguments = json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str):
            arguments = "" if arguments is None else json.dumps(arguments)
        call_id = call.get("id")
        calls.append(
            ToolCall(
                id=call_id if isinstance(call_id, str) else None, function=FunctionCall(name=name, arguments=arguments)
            )
        )
    return calls


def _chat_text(choice: dict, source: str) -> tuple[str | None, str, list[ToolCall] | None]:
    """(trace, answer, tool calls) of a chat choice; a null answer cut off while thinking is an empty, truncated one.

    A tool-calling answer has `content: null` and its calls in `tool_calls`: a normal answer, text "".
    """
    message = choice.get("message")
    if not isinstance(message, dict):
        raise malformed(f"{source}: choices[0] has no message")
    text = message.get("content")
    if text is None and isinstance(message.get("refusal"), str):
        text = message["refusal"]
    if text is not None and not isinstance(text, str):
        raise malformed(f"{source}: choices[0].message.content is not a string")
    calls = _tool_calls(message, source)
    finish = choice.get("finish_reason")
    reasoning, answer = answer_parts(text, _reasoning_field(message), finish if isinstance(finish, str) else None)
    if answer is None:
        if finish != "length" and reasoning is None and calls is None:
            raise malformed(f"{source}: choices[0].message.content is not a string")
        answer = ""  # tool calls alone, or max_tokens ran out while thinking (or the server hides the trace)
    return reasoning, answer, calls


def _completions_text(choice: dict, source: str) -> tuple[str | None, str]:
    text = choice.get("text")
    if not isinstance(text, str):
        raise malformed(f"{source}: choices[0].text is not a string")
    finish = choice.get("finish_reason")
    return split_inline(text, finish if isinstance(finish, str) else None)


def parse_answer(
    payload: Any,
    *,
    want_logprobs: bool,
    fallback_model: str,
    source: str = "answer",
    endpoint: str = "chat",
    top_k: int | None = None,
) -> Completion:
    """A chat or legacy completions answer as a Completion; raises RetryableTeacherError for a bad answer.

    `source` names the answer in messages (e.g. "answer from 127.0.0.1:8000"); `top_k`
    trims the alternatives to the width asked for.
    """
    choice = _first_choice(payload, source)
    if endpoint == "completions":
        (reasoning, text), calls = _completions_text(choice, source), None
    else:
        reasoning, text, calls = _chat_text(choice, source)
    try:
        logprobs = parse_logprobs(choice.get("logprobs"))
    except LogprobFormatError as exc:
        raise malformed(f"{source}: {exc}") from None
    if want_logprobs and logprobs is None:
        raise RetryableTeacherError("missing-logprobs", f"logprobs were asked for but the {source} has none")
    if logprobs is not None and top_k is not None:
        logprobs = keep_top(logprobs, top_k)
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    model = payload.get("model")
    fingerprint = payload.get("system_fingerprint")
    finish_reason = choice.get("finish_reason")
    return Completion(
        text=text,
        reasoning=reasoning,
        tool_calls=calls,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        model=model if isinstance(model, str) and model else fallback_model,
        system_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        usage=Usage(
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
        ),
        logprobs=logprobs if want_logprobs else None,
    )


def parse_chat_response(
    payload: Any, *, want_logprobs: bool, fallback_model: str, source: str = "answer"
) -> Completion:
    """A chat completions answer as a Completion (see `parse_answer`)."""
    return parse_answer(payload, want_logprobs=want_logprobs, fallback_model=fallback_model, source=source)
