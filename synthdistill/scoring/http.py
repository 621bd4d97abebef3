"""Scoring over an OpenAI-compatible API: the teacher reads the student's sample as part of its prompt.

Two request shapes, one attempt per call (the retry policy owns retries; `OpenAIHTTPTeacher.post_json`
classifies faults and fails over between base URLs):

- `vllm-prompt-logprobs`: chat completions with the sample as the final assistant turn, rendered
  closed by the server's own chat template (`add_generation_prompt: false`), `prompt_logprobs: k`,
  `max_tokens: 1`. vLLM answers with one entry per prompt token (the first is null):
  ``{"<token id>": {"logprob", "rank", "decoded_token"}}`` holding the prompt's token (first, or
  named by `prompt_token_ids`) and the top k.
- `completions-echo`: legacy completions with the rendered conversation as `prompt`, `echo: true`,
  `logprobs: k`, `max_tokens: 0` (Together and others) → `choices[0].logprobs.{tokens,
  token_logprobs, top_logprobs, text_offset}`. With `teacher.endpoint: completions` the prompt is
  rendered as the harvest sent it (`render_prompt`); with chat the teacher's chat template renders
  it, so the teacher's tokenizer must be at hand (`teacher.tokenizer`).

Either way the answer's tokens are found by the text they spell: the tokens whose characters lie
inside the answer's span (a token that straddles the span's edge is cut to its part inside it),
plus the token after the answer (the end of the turn) when the sample `ended`.
"""

from __future__ import annotations

import re
from typing import Any

from synthdistill.errors import ConfigError, RetryableTeacherError, TeacherError
from synthdistill.model_store import resolve_tokenizer
from synthdistill.prompt_tokens import tokenizer_reference
from synthdistill.records import Message, TokenLogprobs, Usage
from synthdistill.scoring.records import SampleToScore, ScoreAnswer, ScoreRequest
from synthdistill.teachers.logprob_formats import LogprobFormatError, keep_top, parse_legacy

VLLM = "vllm-prompt-logprobs"
ECHO = "completions-echo"
NO_PROMPT_LOGPROBS = "no prompt_logprobs in the response"
NO_ECHO_LOGPROBS = "no echoed prompt logprobs (choices[0].logprobs) in the response"


def scoring_style(teacher) -> str:
    """The request shape for a teacher behind an API (see the module docstring)."""
    if teacher.endpoint == "completions" or teacher.api_style == "together":
        return ECHO
    return VLLM


class HTTPScorer:
    """Scores samples through an OpenAI-compatible server (`style`: vllm-prompt-logprobs or completions-echo)."""

    backend = "openai"

    def __init__(self, config, api_key: str | None, style: str | None = None):
        from synthdistill.teachers.openai_http import OpenAIHTTPTeacher

        self.http = OpenAIHTTPTeacher(config.teacher, api_key=api_key)
        self.model = config.teacher.model
        self.style = style or scoring_style(config.teacher)
        self.template_kwargs = config.teacher.chat_template_kwargs
        self.render = None
        if self.style == ECHO:
            self.render = prompt_renderer(config)

    @property
    def on_rate_limits(self):
        return self.http.on_rate_limits

    @on_rate_limits.setter
    def on_rate_limits(self, listener) -> None:
        self.http.on_rate_limits = listener

    def endpoint_for(self, request) -> str:
        return self.http.endpoint_for(request)

    async def complete(self, request: ScoreRequest) -> ScoreAnswer:
        sample, k = request.sample, request.top_k
        if not sample.text:  # nothing to read (an ended empty answer cannot be located in the prompt)
            return ScoreAnswer(answer_logprobs([], (0, 0), False, k), self.model, Usage(), None)
        if self.style == VLLM:
            body = {
                "model": self.model,
                "messages": [m.model_dump() for m in sample.conversation()],
                "add_generation_prompt": False,
                "continue_final_message": False,
                "prompt_logprobs": k,
                "return_token_ids": True,
                "max_tokens": 1,
                "temperature": 0.0,
            }
            if self.template_kwargs:
                body["chat_template_kwargs"] = self.template_kwargs
            payload, host = await self.http.post_json(request.request_key, "/chat/completions", body)
            positions = vllm_positions(payload, f"answer from {host}")
        else:
            prompt = self.render(sample)
            body = {"model": self.model, "prompt": prompt, "echo": True, "logprobs": k, "max_tokens": 0}
            body["temperature"] = 0.0
            payload, host = await self.http.post_json(request.request_key, "/completions", body)
            positions = echo_positions(payload, f"answer from {host}")
        logprobs = answer_logprobs(positions, locate_answer(positions, sample.text, host), sample.ended, k)
        return ScoreAnswer(logprobs, _model(payload, self.model), _usage(payload), host)

    async def aclose(self) -> None:
        await self.http.aclose()


# -- reading the answers -------------------------------------------------------------------
# A position: (text, token id or None, logprob, [(text, id or None, logprob)] best first)
Position = tuple[str, int | None, float, list[tuple[str, int | None, float]]]


def _first_choice(payload: Any) -> dict:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}


def vllm_positions(payload: Any, source: str) -> list[Position]:
    """The prompt positions of a vLLM answer's `prompt_logprobs` (top level, or in the first choice)."""
    entries = payload.get("prompt_logprobs") if isinstance(payload, dict) else None
    if entries is None:
        entries = _first_choice(payload).get("prompt_logprobs")
    if not isinstance(entries, list) or not entries:
        raise RetryableTeacherError("missing-logprobs", f"{source}: {NO_PROMPT_LOGPROBS}")
    ids = payload.get("prompt_token_ids") or _first_choice(payload).get("prompt_token_ids")
    if not isinstance(ids, list) or len(ids) != len(entries):
        ids = None
    positions: list[Position] = []
    for p, entry in enumerate(entries):
        if entry is None:  # the first prompt token has no logprob (nothing precedes it)
            positions.append(("", ids[p] if ids else None, 0.0, []))
            continue
        if not isinstance(entry, dict) or not entry:
            raise RetryableTeacherError("malformed", f"{source}: prompt_logprobs[{p}] is not an object of tokens")
        try:
            alternatives = [(int(key), value) for key, value in entry.items()]
            own = int(ids[p]) if ids else alternatives[0][0]
            read = {i: (_text(v), i, float(v["logprob"])) for i, v in alternatives}
        except (KeyError, TypeError, ValueError):
            raise RetryableTeacherError("malformed", f"{source}: prompt_logprobs[{p}] cannot be read") from None
        if own not in read:
            raise RetryableTeacherError("malformed", f"{source}: prompt_logprobs[{p}] lacks the prompt's token")
        # the prompt's own token is there even when it is not among the top k: `keep_top` cuts it then
        text, _, logprob = read[own]
        positions.append((text, own, logprob, sorted(read.values(), key=lambda a: -a[2])))
    return positions


def _text(value: dict) -> str:
    token = value.get("decoded_token")
    if not isinstance(token, str):
        raise TypeError("decoded_token")
    return token


def echo_positions(payload: Any, source: str) -> list[Position]:
    """The positions of an echoed legacy completions answer (the first has no logprob)."""
    logprobs = _first_choice(payload).get("logprobs")
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("tokens"), list) or not logprobs["tokens"]:
        raise RetryableTeacherError("missing-logprobs", f"{source}: {NO_ECHO_LOGPROBS}")
    n = len(logprobs["tokens"])
    fixed = dict(logprobs)  # the first position has null logprobs: read it as 0 / no alternatives
    fixed["token_logprobs"] = [0.0 if v is None else v for v in logprobs.get("token_logprobs") or []]
    fixed["top_logprobs"] = [v or {} for v in (logprobs.get("top_logprobs") or [None] * n)]
    try:
        parsed = parse_legacy(fixed)
    except LogprobFormatError as exc:
        raise RetryableTeacherError("malformed", f"{source}: {exc}") from None
    ids = parsed.token_ids or [None] * n
    top_ids = parsed.top_ids or [[None] * len(row) for row in parsed.top_tokens]
    return [
        (
            parsed.tokens[p],
            ids[p],
            parsed.token_logprobs[p],
            list(zip(parsed.top_tokens[p], top_ids[p], parsed.top_logprobs[p])),
        )
        for p in range(n)
    ]


def locate_answer(positions: list[Position], text: str, host: str) -> tuple[int, int]:
    """The character span of the answer (the last match) in what the prompt tokens spell.

    A token that ends or starts inside a character (byte-level BPE) is spelled with U+FFFD, so
    each non-ASCII character of the text may also be matched by one to four of them.
    """
    spelled = "".join(p[0] for p in positions)
    pattern = "".join(re.escape(c) if ord(c) < 128 else f"(?:{re.escape(c)}|\ufffd{{1,4}})" for c in text)
    matches = list(re.finditer(pattern, spelled))
    if not matches:
        raise TeacherError(
            f"the prompt tokens {host} scored do not spell the sample's text (its chat template may rewrite "
            "assistant turns)"
        )
    return matches[-1].span()


def answer_logprobs(positions: list[Position], span: tuple[int, int], ended: bool, k: int) -> TokenLogprobs:
    """The positions spelling characters [start, end) of the prompt (cut at the edges), and the next one if `ended`."""
    start, end = span
    chosen: list[tuple[str, Position]] = []
    at, after = 0, None
    for index, position in enumerate(positions):
        piece = position[0]
        lo, hi = at, at + len(piece)
        at = hi
        if hi > start and lo < end:
            chosen.append((piece[max(0, start - lo) : len(piece) - max(0, hi - end)], position))
        elif lo >= end and after is None and (hi > lo or chosen):
            after = index
            break
    if ended and after is not None:
        chosen.append((positions[after][0], positions[after]))
    ids = [p[1] for _, p in chosen]
    top_ids = [[a[1] for a in p[3]] for _, p in chosen]
    result = TokenLogprobs(
        tokens=[piece for piece, _ in chosen],
        token_ids=None if any(i is None for i in ids) else ids,
        token_logprobs=[p[2] for _, p in chosen],
        top_tokens=[[a[0] for a in p[3]] for _, p in chosen],
        top_ids=None if any(i is None for row in top_ids for i in row) else top_ids,
        top_logprobs=[[a[2] for a in p[3]] for _, p in chosen],
    )
    return keep_top(result, k)


def _model(payload: Any, fallback: str) -> str:
    model = payload.get("model") if isinstance(payload, dict) else None
    return model if isinstance(model, str) and model else fallback


def _usage(payload: Any) -> Usage:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    count = lambda v: int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0  # noqa: E731
    return Usage(
        prompt_tokens=count(usage.get("prompt_tokens")), completion_tokens=count(usage.get("completion_tokens"))
    )


# -- the prompt of an echo request -----------------------------------------------------------


def prompt_renderer(config):
    """sample → the prompt text of its echo request (the conversation, the sample's text last)."""
    if config.teacher.endpoint == "completions":
        from synthdistill.teachers.openai_dialects import render_prompt

        def plain(sample: SampleToScore) -> str:
            return render_prompt(sample.messages) + sample.text

        return plain
    tokenizer = _teacher_tokenizer(config)
    kwargs = config.teacher.chat_template_kwargs or {}
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]
    bos = tokenizer.bos_token if adds_bos else None

    def templated(sample: SampleToScore) -> str:
        head = _render(tokenizer, sample.messages, add_generation_prompt=True, **kwargs)
        full = _render(tokenizer, sample.conversation(), **kwargs)
        if not full.startswith(head + sample.text):
            raise TeacherError(
                "the teacher's chat template does not render the sample's text verbatim after its prompt"
            )
        cut = len(bos) if bos and full.startswith(bos) else 0  # the server adds its own BOS: not twice
        return full[cut:]

    return templated


def _render(tokenizer, messages: list[Message], **kwargs) -> str:
    return tokenizer.apply_chat_template([m.model_dump() for m in messages], tokenize=False, **kwargs)


def _teacher_tokenizer(config):
    reference = tokenizer_reference(config)
    if reference is None:
        raise ConfigError(
            "scoring with `echo` completions sends the conversation as text rendered with the teacher's chat "
            f"template, which is not known for '{config.teacher.model}': set teacher.tokenizer to its tokenizer "
            "(a folder or an embedded model id), or use teacher.endpoint: completions",
            file=config.path,
        )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer(reference, config.project_dir))
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"the teacher's tokenizer '{reference}' has no chat template to render the conversation", file=config.path
        )
    return tokenizer
