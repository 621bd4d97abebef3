"""Turn the logprob shapes of OpenAI-compatible servers into one `TokenLogprobs`.

`parse_logprobs` detects the shape of a choice's `logprobs` object:

- OpenAI chat (also SGLang, Ollama, llama.cpp, vLLM):
  ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}``;
  `bytes` may be null (llama.cpp); llama.cpp and Fireworks add an integer `id` / `token_id`.
- vLLM with `return_tokens_as_token_ids`: the same shape, every token spelled ``"token_id:123"``.
- legacy (OpenAI Completions, Together, Fireworks):
  ``{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"?, "token_ids"?}``.

Every function here is pure and raises `LogprobFormatError` on a shape it cannot
read, so the teacher can classify the answer as malformed.
"""

from __future__ import annotations

import math
import re
from typing import Any

from synthdistill.records import TokenLogprobs

_TOKEN_ID = re.compile(r"^token_id:(\d+)$")


class LogprobFormatError(ValueError):
    """The `logprobs` object of an answer has a shape no parser understands."""


def parse_token_id(token: str) -> int | None:
    """The id in a vLLM ``"token_id:123"`` token, or None for an ordinary token."""
    match = _TOKEN_ID.match(token)
    return int(match.group(1)) if match else None


def token_text(token: str, raw_bytes: list[int] | None) -> str:
    """The text of a token: an id-spelled token is replaced by its `bytes` when they decode.

    vLLM fills `bytes` from the token string itself, so they decode back to
    ``"token_id:N"``; the raw string is kept then, and whenever the bytes are a
    partial UTF-8 sequence.
    """
    if parse_token_id(token) is None or not raw_bytes:
        return token
    try:
        decoded = bytes(raw_bytes).decode("utf-8")
    except (UnicodeDecodeError, ValueError, TypeError):
        return token
    return token if parse_token_id(decoded) is not None else decoded


def _logprob(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LogprobFormatError(f"{where}: logprob {value!r} is not a number")
    result = float(value)
    if math.isnan(result):
        raise LogprobFormatError(f"{where}: logprob is NaN")
    return result


def _explicit_id(entry: dict) -> int | None:
    """An integer id given beside the token (llama.cpp `id`, Fireworks `token_id`)."""
    for key in ("token_id", "id"):
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _entry(entry: Any, where: str) -> tuple[str, int | None, float]:
    """(text, id or None, logprob) of one `{token, logprob, bytes, ...}` object."""
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        raise LogprobFormatError(f"{where}: expected an object with a string 'token', got {entry!r:.80}")
    token = entry["token"]
    token_id = _explicit_id(entry)
    if token_id is None:
        token_id = parse_token_id(token)
    return token_text(token, entry.get("bytes")), token_id, _logprob(entry.get("logprob"), where)


def _all_ids(ids: list[int | None]) -> list[int] | None:
    return None if not ids or any(i is None for i in ids) else list(ids)  # type: ignore[arg-type]


def _all_top_ids(rows: list[list[int | None]]) -> list[list[int]] | None:
    if not rows or any(i is None for row in rows for i in row):
        return None
    return [list(row) for row in rows]  # type: ignore[arg-type]


def parse_openai_content(content: list[Any]) -> TokenLogprobs:
    """Parse OpenAI chat `logprobs.content` (vLLM `token_id:N` tokens give `token_ids`/`top_ids`)."""
    if not isinstance(content, list):
        raise LogprobFormatError(f"logprobs.content is {type(content).__name__}, expected a list")
    tokens, ids, lps = [], [], []
    top_tokens, top_ids, top_lps = [], [], []
    for t, entry in enumerate(content):
        text, token_id, lp = _entry(entry, f"logprobs.content[{t}]")
        tokens.append(text)
        ids.append(token_id)
        lps.append(lp)
        alternatives = entry.get("top_logprobs") or []
        if not isinstance(alternatives, list):
            raise LogprobFormatError(f"logprobs.content[{t}].top_logprobs is not a list")
        parsed = [_entry(a, f"logprobs.content[{t}].top_logprobs[{j}]") for j, a in enumerate(alternatives)]
        top_tokens.append([p[0] for p in parsed])
        top_ids.append([p[1] for p in parsed])
        top_lps.append([p[2] for p in parsed])
    return TokenLogprobs(
        tokens=tokens,
        token_ids=_all_ids(ids),
        token_logprobs=lps,
        top_tokens=top_tokens,
        top_ids=_all_top_ids(top_ids),
        top_logprobs=top_lps,
    )


def _legacy_top(position: Any, where: str) -> list[tuple[str, int | None, float]]:
    """One position of legacy `top_logprobs`: a dict token→logprob (best first) or a list of objects."""
    if position is None:
        return []
    if isinstance(position, dict):
        pairs = [(token, _logprob(lp, where)) for token, lp in position.items()]
        # a JSON object has no meaningful order: rank the alternatives best first (stable on ties)
        pairs.sort(key=lambda pair: -pair[1])
        return [(token_text(token, None), parse_token_id(token), lp) for token, lp in pairs]
    if isinstance(position, list):
        return [_entry(entry, f"{where}[{j}]") for j, entry in enumerate(position)]
    raise LogprobFormatError(f"{where}: expected an object or a list, got {type(position).__name__}")


def _legacy_ids(logprobs: dict, tokens: list[str]) -> list[int | None]:
    given = logprobs.get("token_ids")
    if given is None:
        return [parse_token_id(token) for token in tokens]
    if not isinstance(given, list) or len(given) != len(tokens):
        raise LogprobFormatError("logprobs.token_ids does not match logprobs.tokens")
    # Together sends ids as JSON numbers that may be floats (3648.0)
    ids = []
    for value in given:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise LogprobFormatError(f"logprobs.token_ids holds {value!r}, not an integer")
        ids.append(int(value))
    return ids


def parse_legacy(logprobs: dict[str, Any]) -> TokenLogprobs:
    """Parse the legacy shape (OpenAI Completions, Together, Fireworks); `text_offset` is ignored."""
    tokens = logprobs.get("tokens")
    values = logprobs.get("token_logprobs")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise LogprobFormatError("logprobs.tokens is not a list of strings")
    if not isinstance(values, list) or len(values) != len(tokens):
        raise LogprobFormatError("logprobs.token_logprobs does not match logprobs.tokens")
    tops = logprobs.get("top_logprobs")
    if tops is None:
        tops = [None] * len(tokens)
    if not isinstance(tops, list) or len(tops) != len(tokens):
        raise LogprobFormatError("logprobs.top_logprobs does not match logprobs.tokens")
    parsed = [_legacy_top(position, f"logprobs.top_logprobs[{t}]") for t, position in enumerate(tops)]
    return TokenLogprobs(
        tokens=[token_text(token, None) for token in tokens],
        token_ids=_all_ids(_legacy_ids(logprobs, tokens)),
        token_logprobs=[_logprob(v, f"logprobs.token_logprobs[{t}]") for t, v in enumerate(values)],
        top_tokens=[[p[0] for p in row] for row in parsed],
        top_ids=_all_top_ids([[p[1] for p in row] for row in parsed]),
        top_logprobs=[[p[2] for p in row] for row in parsed],
    )


def parse_logprobs(logprobs: Any) -> TokenLogprobs | None:
    """Detect the shape of a choice's `logprobs` and parse it; None when the answer carries none."""
    if logprobs is None or logprobs == {}:
        return None
    if not isinstance(logprobs, dict):
        raise LogprobFormatError(f"logprobs is {type(logprobs).__name__}, expected an object")
    if "content" in logprobs:
        content = logprobs["content"]
        return None if content is None else parse_openai_content(content)
    if "tokens" in logprobs:
        return parse_legacy(logprobs)
    raise LogprobFormatError(f"logprobs has neither 'content' nor 'tokens' (keys: {sorted(logprobs)})")


def keep_top(logprobs: TokenLogprobs, k: int) -> TokenLogprobs:
    """At most the `k` best alternatives per position, best first.

    llama.cpp and legacy Completions add the sampled token when it is not among the
    top k (k + 1 entries); records keep the width that was asked for.
    """

    def best(row: list[float]) -> list[int]:
        return sorted(range(len(row)), key=lambda j: -row[j])[:k]

    order = [best(row) for row in logprobs.top_logprobs]
    if all(o == list(range(len(row))) for o, row in zip(order, logprobs.top_logprobs, strict=True)):
        return logprobs

    def pick(rows: list[list]) -> list[list]:
        return [[row[j] for j in o] for o, row in zip(order, rows, strict=True)]

    return logprobs.model_copy(
        update={
            "top_tokens": pick(logprobs.top_tokens),
            "top_ids": pick(logprobs.top_ids) if logprobs.top_ids is not None else None,
            "top_logprobs": pick(logprobs.top_logprobs),
        }
    )
