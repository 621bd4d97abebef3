"""Reasoning traces of thinking teachers: split them from answers, find them in the logprobs.

A thinking model's answer comes back in one of three ways:

- split by the server's reasoning parser: `message.reasoning` (vLLM ≥ 0.11, OpenRouter,
  Together, Ollama) or `message.reasoning_content` (DeepSeek's API, older vLLM, llama.cpp);
- inline, when no parser split it: `<think>…</think>` at the start of the text (an R1
  distill's template opens `<think>` in the prompt, so the text may hold only `…</think>`);
- cut off while thinking (`max_tokens` ran out): no answer at all, `finish_reason` length.

The logprobs of such an answer cover every generated token, the trace's and the answer's,
while the record keeps them apart. `locate_spans` finds each part's token span by matching
the decoded token strings; when it cannot, it says why, and the KD builder leaves the record
out rather than pair targets with text they do not belong to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_LEADING_OPEN = re.compile(r"^\s*<think>")


def split_inline(text: str, finish_reason: str | None = None) -> tuple[str | None, str]:
    """(trace, answer) of a text that may hold an inline `<think>…</think>` block; (None, text) without one.

    A text that opens `<think>` and never closes it is a trace cut off mid-thought when the
    answer was truncated (`finish_reason` length): (trace, ""). Otherwise an unclosed tag is
    left in the answer as it is.
    """
    opened = _LEADING_OPEN.match(text)
    close = text.find(THINK_CLOSE)
    if close >= 0 and (opened or THINK_OPEN not in text[:close]):
        start = opened.end() if opened else 0
        return text[start:close].strip() or None, text[close + len(THINK_CLOSE) :].strip()
    if opened and finish_reason == "length":
        return text[opened.end() :].strip() or None, ""
    return None, text


def answer_parts(
    content: str | None, reasoning: str | None, finish_reason: str | None
) -> tuple[str | None, str | None]:
    """(trace, answer) from a message's `content` and its parsed `reasoning` field.

    A parsed trace wins; an inline block left in `content` beside it (llama.cpp's
    `deepseek-legacy` format) is removed from the answer. Without a parsed trace, an inline
    block is split out. `content` None stays None (the caller decides whether that is an answer).
    """
    if isinstance(reasoning, str) and reasoning.strip():
        if content is not None:
            inline, rest = split_inline(content, finish_reason)
            content = rest if inline is not None else content.strip()  # the whitespace after </think> is a separator
        return reasoning.strip(), content
    if content is None:
        return None, None
    return split_inline(content, finish_reason)


class Spans(NamedTuple):
    """Token spans [start, end) of the trace and the answer in an answer's logprobs, or why there are none."""

    reasoning: list[int] | None
    answer: list[int] | None
    note: str | None


def _token_range(starts: list[int], ends: list[int], lo: int, hi: int) -> list[int]:
    """Tokens that overlap chars [lo, hi); an empty range at the first token that starts at or after lo."""
    first = next((t for t, end in enumerate(ends) if end > lo), len(ends))
    last = first
    while last < len(starts) and starts[last] < hi:
        last += 1
    return [first, max(first, last)]


def char_offsets(tokens: Sequence[str]) -> tuple[list[int], list[int]]:
    """Start and end character offsets of each token in the concatenation of all tokens."""
    starts, ends, at = [], [], 0
    for token in tokens:
        starts.append(at)
        at += len(token)
        ends.append(at)
    return starts, ends


def part_offsets(joined: str, reasoning: str | None, answer: str) -> tuple[int | None, int] | str:
    """Character offsets of the trace (None without one) and of the answer after it in the joined
    token strings, or a note saying which was not found."""
    at = None
    end = 0
    if reasoning is not None:
        at = joined.find(reasoning)
        if at < 0:
            return "trace not found in the logprob tokens (token strings are not text, or differ)"
        end = at + len(reasoning)
    answer_at = joined.find(answer, end) if answer else end
    if answer_at < 0:
        return "answer not found after the trace in the logprob tokens"
    return at, answer_at


def locate_spans(tokens: Sequence[str] | None, reasoning: str | None, answer: str) -> Spans | None:
    """The token spans of trace and answer inside `tokens` (decoded strings); None when there are no logprobs.

    The trace is looked for first, the answer after it. A token that straddles the edge of a
    part (a newline glued to the first word) belongs to the span; the KD builder aligns by
    characters, so such an edge token simply gets no targets.
    """
    if tokens is None:
        return None
    if reasoning is None:
        return Spans(None, [0, len(tokens)], None)
    found = part_offsets("".join(tokens), reasoning, answer)
    if isinstance(found, str):
        return Spans(None, None, found)
    at, answer_at = found
    starts, ends = char_offsets(tokens)
    return Spans(
        _token_range(starts, ends, at, at + len(reasoning)),
        _token_range(starts, ends, answer_at, answer_at + len(answer)),
        None,
    )
