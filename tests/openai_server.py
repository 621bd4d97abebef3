"""A real OpenAI-compatible HTTP server on 127.0.0.1 with fault injection, for tests.

Importable::

    with FakeOpenAIServer(fail_first_n_per_prompt=1, fail_kinds=["429"]) as server:
        ... server.base_url  ("http://127.0.0.1:PORT/v1"), server.stats(), server.configure(...)

Runnable (serves until killed)::

    python tests/openai_server.py --port 0 --fault-rate 0.2   →  prints "READY http://127.0.0.1:PORT/v1"

Answers are deterministic: the text is "Answer to: " + the last user message, a
"token" is a whitespace-separated word (with the whitespace before it), and the
logprobs are functions of the position (`token_logprob`, `alternatives`), so tests
can check every number. `dialect` answers as one server family does (see
../shared/licences.md): "openai" (bytes filled), "llamacpp" (llama-cpp-python: bytes
null, no ids), "vllm" (`owned_by: vllm` in /models; "token_id:N" tokens when asked),
"together" (an integer `logprobs` only; legacy shape with token ids) or "ollama".
Faults (see `Faults`) are set at start or at run time with
`POST /_control`; `GET /_stats` counts requests by outcome and the answers each
prompt got; `POST /_reset` clears the counters. HTTP/1.1 keep-alive, asyncio: one
thread serves hundreds of concurrent connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import threading
import time
import zlib
from collections import Counter
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# answered with that HTTP status and an OpenAI-style error body
STATUS_KINDS = ("400", "404", "408", "409", "422", "500", "502", "503", "504")
FAULT_KINDS = ("429", *STATUS_KINDS, "drop", "malformed", "slow", "no-logprobs", "surrogate")
DIALECTS = ("openai", "llamacpp", "vllm", "together", "ollama")
# what each family's GET /v1/models says in `owned_by`
OWNED_BY = {"openai": "fake", "llamacpp": "me", "vllm": "vllm", "together": "together", "ollama": "library"}
OUTCOMES = FAULT_KINDS + ("ok",)
PREFIX = "Answer to: "
MALFORMED_BODY = b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "message": {"role": "assist'


class Faults(BaseModel):
    """What the server does wrong, and how. Every field can be changed with POST /_control."""

    model_config = ConfigDict(extra="forbid")

    rates: dict[str, float] = Field(default_factory=dict, description="fault kind → probability per request")
    fault_rate: float = Field(0.0, ge=0, le=1, description="probability spread evenly over fault_kinds")
    fault_kinds: list[str] = Field(default_factory=lambda: ["429", "500", "503", "drop", "malformed"])
    schedule: list[str] = Field(default_factory=list, description="outcomes of the first requests, in order")
    fail_first_n_per_prompt: int = Field(0, ge=0, description="each prompt's first N attempts fail")
    fail_kinds: list[str] = Field(default_factory=lambda: ["500"], description="their faults, cycled")
    retry_after: float | str | None = Field(1.0, description="Retry-After header of a 429 (None: not sent)")
    ratelimit_headers: dict[str, str] = Field(default_factory=dict, description="added to 429s and answers")
    latency_s: float = Field(0.0, ge=0, description="delay before every answer")
    slow_s: float = Field(5.0, ge=0, description="delay of a 'slow' fault")
    require_key: str | None = None
    auth_status: int = Field(401, description="401 or 403 for a missing/wrong key")
    model: str | None = Field(None, description="model name answered (default: the one asked)")
    models: list[str] | None = Field(None, description="known models; others get 404")
    system_fingerprint: str | None = "fp_fake_openai"
    dialect: Literal["openai", "llamacpp", "vllm", "together", "ollama"] = Field(
        "openai", description="which server family's request and answer shapes"
    )
    seed: int = 0
    batch_polls_to_complete: int = Field(2, ge=1, description="Batch API: GET /batches/{id} calls until completed")
    batch_end: Literal["completed", "expired", "failed", "cancelled"] = Field(
        "completed", description="Batch API: how a batch ends (all but completed answer no line)"
    )
    thinking: Literal["none", "reasoning", "reasoning_content", "inline"] = Field(
        "none",
        description="answer as a thinking model: the trace (`trace_text`) in message.reasoning, in "
        "message.reasoning_content (as a reasoning parser splits it), or inline <think>…</think> in the text",
    )

    json_broken_seeds: list[int] = Field(
        default_factory=list,
        description="with a response_format: answers to these seeds break off mid-object (not valid JSON)",
    )
    json_broken_match: str = Field("", description="…only for prompts holding this text ('' = every prompt)")
    prompt_logprobs_cap: int | None = Field(
        None, description="scoring: the most alternatives returned per prompt position (a server's max-logprobs)"
    )

    @model_validator(mode="after")
    def _known_kinds(self) -> Faults:
        unknown = [k for k in [*self.rates, *self.fault_kinds, *self.fail_kinds] if k not in FAULT_KINDS]
        unknown += [k for k in self.schedule if k not in OUTCOMES]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(OUTCOMES)}")
        if not self.fail_kinds or not self.fault_kinds:
            raise ValueError("fail_kinds and fault_kinds need at least one kind")
        return self

    def effective_rates(self) -> list[tuple[str, float]]:
        rates = Counter({k: v for k, v in self.rates.items()})
        for kind in self.fault_kinds:
            rates[kind] += self.fault_rate / len(self.fault_kinds)
        return [(k, rates[k]) for k in FAULT_KINDS if rates[k] > 0]


# -- the deterministic answer -------------------------------------------------------------


def answer_text(prompt: str) -> str:
    """The full answer to a prompt (before any max_tokens cut)."""
    return PREFIX + prompt


def trace_text(prompt: str) -> str:
    """A thinking answer's trace for a prompt (its own words, so a test can tell the traces apart)."""
    return f"Thinking about: {prompt} Step one. Step two."


def thinking_text(prompt: str) -> str:
    """Everything a thinking model generates: the <think> block, then the answer."""
    return f"<think>\n{trace_text(prompt)}\n</think>\n\n{answer_text(prompt)}"


def _parsed_thinking(text: str) -> tuple[str, str | None]:
    """(reasoning, content) as vLLM's deepseek_r1 parser splits generated text; content None when cut mid-thought."""
    body = text.removeprefix("<think>")
    reasoning, closed, content = body.partition("</think>")
    return reasoning, (content if closed else None)


def split_tokens(text: str) -> list[str]:
    """Tokens: whitespace-separated words with the whitespace before them; they join back to `text`."""
    tokens = re.findall(r"\s*\S+", text)
    rest = text[len("".join(tokens)) :]
    if rest:
        tokens = tokens[:-1] + [tokens[-1] + rest] if tokens else [rest]
    return tokens


def token_logprob(position: int) -> float:
    """Logprob of the answer's token at `position`: 0, -0.25, -0.5, -0.75, 0, … (exact in binary)."""
    return -0.25 * (position % 4) + 0.0


def token_id(token: str) -> int:
    """A stable fake vocabulary id."""
    return zlib.crc32(token.encode("utf-8")) % 100_000


def alternatives(token: str, position: int, k: int) -> list[tuple[str, float]]:
    """The top-k at a position: the sampled token first, then "alt1", "alt2", … each 1 nat lower."""
    if k <= 0:
        return []
    lp = token_logprob(position)
    return [(token, lp)] + [(f"alt{j}", lp - j) for j in range(1, k)]


def spelled(token: str, as_ids: bool) -> str:
    """A token as the server spells it: vLLM's "token_id:N" when `as_ids`."""
    return f"token_id:{token_id(token)}" if as_ids else token


def _openai_entry(token: str, lp: float, as_ids: bool, dialect: str) -> dict:
    text = spelled(token, as_ids)
    if dialect == "llamacpp":  # llama-cpp-python 0.3: bytes null, no ids
        return {"token": text, "logprob": lp, "bytes": None}
    # OpenAI and Ollama send the token's UTF-8 bytes; vLLM the bytes of what it spelled
    return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}


def openai_logprobs(tokens: list[str], k: int, as_ids: bool = False, dialect: str = "openai") -> dict:
    """Chat `logprobs` in OpenAI shape, as `dialect` fills it; vLLM `token_id:N` when as_ids."""
    content = []
    for t, token in enumerate(tokens):
        entry = _openai_entry(token, token_logprob(t), as_ids, dialect)
        entry["top_logprobs"] = [_openai_entry(a, lp, as_ids, dialect) for a, lp in alternatives(token, t, k)]
        content.append(entry)
    return {"content": content}


def legacy_logprobs(tokens: list[str], k: int, with_ids: bool, as_ids: bool = False) -> dict:
    """Legacy shape (OpenAI Completions; Together when `with_ids`; vLLM "token_id:N" spellings when `as_ids`)."""
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    result = {
        "tokens": [spelled(token, as_ids) for token in tokens],
        "token_logprobs": [token_logprob(t) for t in range(len(tokens))],
        "top_logprobs": [
            {spelled(a, as_ids): lp for a, lp in alternatives(token, t, k)} for t, token in enumerate(tokens)
        ],
        "text_offset": offsets,
    }
    if with_ids:
        result["token_ids"] = [token_id(token) for token in tokens]
    return result


def _logprob_request(body: dict) -> tuple[str | None, int]:
    """(shape, k) asked for: "openai", "legacy" (an integer `logprobs`) or None."""
    asked = body.get("logprobs")
    if isinstance(asked, bool):
        return ("openai", int(body.get("top_logprobs") or 0)) if asked else (None, 0)
    if isinstance(asked, int) and asked > 0:
        return "legacy", asked
    return None, 0


def _prompt_of(path: str, body: dict) -> str:
    if path.endswith("/chat/completions"):
        messages = body["messages"]
        users = [m for m in messages if m.get("role") == "user"] or messages
        content = users[-1].get("content")
        return content if isinstance(content, str) else json.dumps(content)
    prompt = body["prompt"]
    return prompt[0] if isinstance(prompt, list) else prompt


def structured_text(prompt: str) -> str:
    """The answer to a request with a response_format: one JSON object (valid for `{answer: string}`)."""
    return json.dumps({"answer": answer_text(prompt), "words": len(prompt.split())})


def called_tool(body: dict) -> tuple[str, str] | None:
    """(function name, arguments JSON) the server calls for a request with tools, or None (no tools, `none`).

    It calls the named `tool_choice`, else the first tool, with the prompt as the value of the
    function's first parameter ("query" when it declares none).
    """
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    function = next((t["function"] for t in tools if t["function"]["name"] == named), tools[0]["function"])
    properties = list((function.get("parameters") or {}).get("properties") or {}) or ["query"]
    return function["name"], json.dumps({properties[0]: _prompt_of("/chat/completions", body)})


def tool_call_text(name: str, arguments: str) -> str:
    """What a Hermes-style model generates for a call (the tool parser turns it into `tool_calls`)."""
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


def _generated(path: str, body: dict, faults: Faults, prompt: str) -> tuple[str, tuple[str, str] | None]:
    """(generated text, the tool call it holds or None) for a request."""
    call = called_tool(body) if path.endswith("/chat/completions") else None
    if call is not None:
        return tool_call_text(*call), call
    if body.get("response_format"):
        text = structured_text(prompt)
        if body.get("seed") in faults.json_broken_seeds and faults.json_broken_match in prompt:
            text = text[: len(text) // 2]  # broken off mid-object
        return text, None
    return (thinking_text(prompt) if faults.thinking != "none" else answer_text(prompt)), None


def build_answer(path: str, body: dict, faults: Faults, with_logprobs: bool = True) -> dict:
    """The deterministic JSON answer to a valid chat or legacy completions request."""
    prompt = _prompt_of(path, body)
    thinking = faults.thinking != "none"
    generated, call = _generated(path, body, faults, prompt)
    tokens = split_tokens(generated)
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    finish = "stop"
    if isinstance(max_tokens, int) and max_tokens < len(tokens):
        tokens, finish = tokens[:max_tokens], "length"
    text = "".join(tokens)
    shape, k = _logprob_request(body) if with_logprobs else (None, 0)
    chat = path.endswith("/chat/completions")
    as_ids = faults.dialect == "vllm" and bool(body.get("return_tokens_as_token_ids"))
    if shape is None:
        logprobs = None
    elif chat and shape == "openai":
        logprobs = openai_logprobs(tokens, k, as_ids=as_ids, dialect=faults.dialect)
    else:
        logprobs = legacy_logprobs(tokens, k, with_ids=chat, as_ids=as_ids)
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": logprobs}
    if call is not None and finish == "stop":
        tool_call = {"id": f"call_{zlib.crc32(text.encode('utf-8')):08x}", "type": "function"}
        tool_call["function"] = {"name": call[0], "arguments": call[1]}
        choice["message"] = {"role": "assistant", "content": None, "tool_calls": [tool_call]}
        choice["finish_reason"] = "tool_calls"
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    elif chat and thinking and faults.thinking != "inline":
        reasoning, content = _parsed_thinking(text)
        choice["message"] = {"role": "assistant", "content": content, faults.thinking: reasoning}
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    elif chat:
        choice["message"] = {"role": "assistant", "content": text}
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    else:
        choice["text"] = text
        prompt_words = len(prompt.split())
    return {
        "id": f"cmpl-{zlib.crc32(prompt.encode('utf-8')):08x}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": faults.model or body.get("model", "fake-model"),
        "system_fingerprint": faults.system_fingerprint,
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_words + len(tokens),
        },
    }


# -- scoring: the logprobs of given text (vLLM `prompt_logprobs`, legacy `echo`) ---------------------


def is_scoring_request(body: dict) -> bool:
    """A request for the logprobs of its own prompt: vLLM's `prompt_logprobs`, or `echo` completions."""
    return body.get("prompt_logprobs") is not None or bool(body.get("echo"))


def chat_prompt_tokens(messages: list[dict], add_generation_prompt: bool) -> list[str]:
    """The fake chat template, as tokens: `<|role|>` + the content's tokens + `<|end|>` per message."""
    tokens = []
    for message in messages:
        tokens += [f"<|{message['role']}|>", *split_tokens(str(message.get("content") or "")), "<|end|>"]
    return tokens + (["<|assistant|>"] if add_generation_prompt else [])


def prompt_token_logprob(position: int) -> float:
    """Logprob of prompt token `position` as the fake teacher reads it: -0.5, -1.0, -1.5, -0.5, …"""
    return -0.5 * (position % 3 + 1)


def prompt_alternatives(token: str, position: int, k: int) -> list[tuple[str, float]]:
    """The top-k at a prompt position: the token itself first, then "alt1", … each 1 nat lower."""
    lp = prompt_token_logprob(position)
    return [(token, lp)] + [(f"alt{j}", lp - j) for j in range(1, k)]


def scoring_answer(path: str, body: dict, faults: Faults, with_logprobs: bool = True) -> dict:
    """The answer to a scoring request: vLLM `prompt_logprobs` (chat) or an echoed legacy completion."""
    chat = path.endswith("/chat/completions")
    if chat:
        tokens = chat_prompt_tokens(body["messages"], bool(body.get("add_generation_prompt", True)))
        k = int(body.get("prompt_logprobs") or 0)
    else:
        tokens = split_tokens(_prompt_of(path, body))
        k = int(body.get("logprobs") or 0)
    k = min(k, faults.prompt_logprobs_cap) if faults.prompt_logprobs_cap is not None else k
    tops = [prompt_alternatives(token, p, k) for p, token in enumerate(tokens)]
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
    answer: dict[str, Any] = {
        "id": f"score-{zlib.crc32(''.join(tokens).encode('utf-8')):08x}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": faults.model or body.get("model", "fake-model"),
        "choices": [choice],
        "usage": {"prompt_tokens": len(tokens), "completion_tokens": 1 if chat else 0},
    }
    if chat:
        choice["message"] = {"role": "assistant", "content": "ok"}
        if with_logprobs:
            answer["prompt_logprobs"] = [None] + [
                {
                    str(token_id(a)): {"logprob": lp, "rank": j + 1, "decoded_token": a}
                    for j, (a, lp) in enumerate(tops[p])
                }
                for p in range(1, len(tokens))
            ]
            if body.get("return_token_ids"):
                answer["prompt_token_ids"] = [token_id(t) for t in tokens]
        answer["usage"]["total_tokens"] = len(tokens) + 1
        return answer
    choice["text"] = "".join(tokens)
    if with_logprobs:
        offsets = [sum(len(t) for t in tokens[:p]) for p in range(len(tokens))]
        choice["logprobs"] = {
            "tokens": tokens,
            "token_logprobs": [None] + [prompt_token_logprob(p) for p in range(1, len(tokens))],
            "top_logprobs": [None] + [dict(tops[p]) for p in range(1, len(tokens))],
            "text_offset": offsets,
        }
    else:
        choice["logprobs"] = None
    return answer


def _well_formed(path: str, body: Any) -> bool:
    """Whether a request body has what `build_answer` reads: messages (chat) or a prompt (legacy)."""
    if not isinstance(body, dict):
        return False
    if path.endswith("/chat/completions"):
        messages = body.get("messages")
        return isinstance(messages, list) and bool(messages) and all(isinstance(m, dict) for m in messages)
    prompt = body.get("prompt")
    return isinstance(prompt, str) or (isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], str))


def _error(message: str, kind: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Request:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes, keep_alive: bool):
        self.method, self.path, self.headers, self.body, self.keep_alive = method, path, headers, body, keep_alive


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
    """One HTTP/1.1 request, or None at a clean end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunks.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(c[:-2] for c in chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return _Request(method, target.split("?", 1)[0], headers, body, keep_alive)


def _multipart_file(req: _Request) -> bytes:
    """The bytes of the part named "file" of a multipart/form-data upload."""
    from email.parser import BytesParser
    from email.policy import HTTP

    head = f"Content-Type: {req.headers.get('content-type', '')}\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(head + req.body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True)
    raise ValueError("upload has no 'file' part")


def _public(batch: dict) -> dict:
    """A batch as the API shows it (without the server's poll counter)."""
    return {k: v for k, v in batch.items() if k != "polls"}


def _retry_after_header(value: float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class FakeOpenAIServer:
    """The server; a context manager that serves from a background thread on a free port.

    `configure(**faults)` and `reset()` act at once (tests need not go through HTTP);
    `stats()` is the same object `GET /_stats` returns.
    """

    def __init__(self, port: int = 0, **faults: Any):
        self.faults = Faults(**faults)
        self.port = port
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Clear counters, per-prompt attempts and the schedule position; reseed the RNG."""
        with self._lock:
            self._rng = random.Random(self.faults.seed)
            self._requests = 0
            self._outcomes: Counter[str] = Counter()
            self._answered: Counter[str] = Counter()
            self._attempts: Counter[str] = Counter()
            self._schedule_pos = 0
            self._in_flight = 0
            self._max_in_flight = 0
            self._models_listed = 0
            self._last_request: dict[str, Any] | None = None
            self._files: dict[str, bytes] = {}
            self._batches: dict[str, dict[str, Any]] = {}
            self._batch_polls = 0

    def configure(self, **updates: Any) -> Faults:
        """Change faults at run time (unknown names or kinds raise ValueError / ValidationError)."""
        with self._lock:
            faults = Faults(**{**self.faults.model_dump(), **updates})
            if faults.seed != self.faults.seed:
                self._rng = random.Random(faults.seed)
            if "schedule" in updates:
                self._schedule_pos = 0
            self.faults = faults
            return faults

    def stats(self) -> dict[str, Any]:
        """Requests, outcomes, answers and attempts per prompt, concurrency seen, /models calls, the last API request."""
        with self._lock:
            return {
                "requests": self._requests,
                "by_outcome": dict(self._outcomes),
                "answered": dict(self._answered),
                "attempts": dict(self._attempts),
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "models_listed": self._models_listed,
                "last_request": self._last_request,
                "files_uploaded": sum(1 for name in self._files if name.startswith("file-in-")),
                "batches_created": len(self._batches),
                "batch_polls": self._batch_polls,
            }

    def _decide(self, prompt: str) -> str:
        """This attempt's outcome: the schedule, then fail_first_n_per_prompt, then the seeded rates."""
        with self._lock:
            f = self.faults
            self._attempts[prompt] += 1
            attempt = self._attempts[prompt]
            if self._schedule_pos < len(f.schedule):
                self._schedule_pos += 1
                return f.schedule[self._schedule_pos - 1]
            if attempt <= f.fail_first_n_per_prompt:
                return f.fail_kinds[(attempt - 1) % len(f.fail_kinds)]
            draw, edge = self._rng.random(), 0.0
            for kind, rate in f.effective_rates():
                edge += rate
                if draw < edge:
                    return kind
            return "ok"

    def _record(self, outcome: str, prompt: str | None = None) -> None:
        with self._lock:
            self._outcomes[outcome] += 1
            if prompt is not None:
                self._answered[prompt] += 1

    # -- HTTP ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start_async(self) -> str:
        """Bind 127.0.0.1:port in the running loop; returns the base URL."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.base_url

    async def close_async(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                request = await _read_request(reader, writer)
                if request is None or not await self._dispatch(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _send(
        self, writer, status: int, payload: dict | bytes, keep_alive: bool, headers: dict[str, str] | None = None
    ) -> bool:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        head = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
        ]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        return keep_alive

    async def _dispatch(self, req: _Request, reader, writer) -> bool:
        route = (req.method, req.path)
        if route == ("GET", "/_stats"):
            return await self._send(writer, 200, self.stats(), req.keep_alive)
        if route == ("POST", "/_reset"):
            self.reset()
            return await self._send(writer, 200, {"reset": True}, req.keep_alive)
        if route == ("POST", "/_control"):
            try:
                faults = self.configure(**json.loads(req.body or b"{}"))
            except (ValueError, TypeError) as exc:
                return await self._send(writer, 400, _error(str(exc), "invalid_request_error"), req.keep_alive)
            return await self._send(writer, 200, faults.model_dump(), req.keep_alive)
        if route == ("GET", "/v1/models"):
            with self._lock:
                self._models_listed += 1
            names = self.faults.models or [self.faults.model or "fake-model"]
            owner = OWNED_BY[self.faults.dialect]
            data = [{"id": n, "object": "model", "owned_by": owner} for n in names]
            return await self._send(writer, 200, {"object": "list", "data": data}, req.keep_alive)
        if req.method == "POST" and req.path in ("/v1/chat/completions", "/v1/completions"):
            with self._lock:
                self._requests += 1
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
            try:
                return await self._api(req, reader, writer)
            finally:
                with self._lock:
                    self._in_flight -= 1
        if req.path.startswith(("/v1/files", "/v1/batches")):
            status, payload = self._batch_api(req)
            return await self._send(writer, status, payload, req.keep_alive)
        return await self._send(writer, 404, _error(f"no route {req.method} {req.path}", "not_found"), req.keep_alive)

    # -- Batch API: upload a JSONL, create a batch, poll it, download its output and errors ---------
    def _batch_api(self, req: _Request) -> tuple[int, dict | bytes]:
        f = self.faults
        if f.require_key is not None and req.headers.get("authorization", "") != f"Bearer {f.require_key}":
            return f.auth_status, _error("Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        parts = req.path.strip("/").split("/")  # v1, files|batches, [id], [content]
        if (req.method, parts[1:]) == ("POST", ["files"]):
            file_id = f"file-in-{len(self._files)}"
            self._files[file_id] = _multipart_file(req)
            return 200, {"id": file_id, "object": "file", "purpose": "batch", "bytes": len(self._files[file_id])}
        if (req.method, parts[1:]) == ("POST", ["batches"]):
            body = json.loads(req.body)
            if body.get("input_file_id") not in self._files:
                return 404, _error("No such File object", "invalid_request_error")
            batch_id = f"batch_{len(self._batches)}"
            self._batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body.get("endpoint"),
                "input_file_id": body["input_file_id"],
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "polls": 0,
            }
            return 200, _public(self._batches[batch_id])
        if req.method == "GET" and parts[1] == "batches" and len(parts) == 3 and parts[2] in self._batches:
            with self._lock:
                self._batch_polls += 1
            batch = self._batches[parts[2]]
            batch["polls"] += 1
            if batch["status"] in ("validating", "in_progress"):
                batch["status"] = "in_progress"
                if batch["polls"] >= f.batch_polls_to_complete and f.batch_end != "completed":
                    batch["status"] = f.batch_end
                elif batch["polls"] >= f.batch_polls_to_complete:
                    self._complete_batch(batch)
            return 200, _public(batch)
        if req.method == "GET" and parts[1] == "files" and parts[3:] == ["content"] and parts[2] in self._files:
            return 200, self._files[parts[2]]
        return 404, _error(f"no route {req.method} {req.path}", "not_found")

    def _complete_batch(self, batch: dict) -> None:
        """Answer every input line as the chat endpoint would (faults too); write the output and error files."""
        output, errors = [], []
        for raw in self._files[batch["input_file_id"]].decode("utf-8").splitlines():
            line = json.loads(raw)
            body, custom_id = line["body"], line["custom_id"]
            with self._lock:
                self._requests += 1
            prompt = _prompt_of(line["url"], body)
            kind = self._decide(prompt)
            self._record(kind if kind != "slow" else "ok", prompt if kind in ("ok", "slow") else None)
            if kind in ("ok", "slow", "no-logprobs", "malformed"):
                answer = (
                    {}
                    if kind == "malformed"
                    else build_answer(line["url"], body, self.faults, with_logprobs=kind != "no-logprobs")
                )
                output.append(
                    {
                        "id": f"batch_req_{custom_id[:8]}",
                        "custom_id": custom_id,
                        "response": {"status_code": 200, "body": answer},
                        "error": None,
                    }
                )
            else:
                status = 500 if kind == "drop" else int(kind)
                errors.append(
                    {
                        "id": f"batch_req_{custom_id[:8]}",
                        "custom_id": custom_id,
                        "response": {
                            "status_code": status,
                            "body": _error(f"{HTTPStatus(status).phrase} (injected)", "server_error"),
                        },
                        "error": None,
                    }
                )
        for name, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                file_id = f"file-out-{len(self._files)}"
                self._files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode("utf-8")
                batch[name] = file_id
        batch["status"] = "completed"

    def _refusal(self, req: _Request, body: Any) -> tuple[int, dict] | None:
        """(status, error) for a request the API itself refuses: bad body, wrong key, unknown model."""
        if not _well_formed(req.path, body):
            return 400, _error(
                "request body needs 'messages' (chat) or 'prompt' (completions)", "invalid_request_error"
            )
        f = self.faults
        if f.require_key is not None:
            given = req.headers.get("authorization", "")
            key = given[7:] if given.startswith("Bearer ") else ""
            if key != f.require_key:
                # like several real servers, echo the key we were given: the client must redact it
                text = f"Incorrect API key provided: {key}" if key else "You didn't provide an API key."
                return f.auth_status, _error(text, "invalid_request_error", "invalid_api_key")
        if f.dialect == "together" and isinstance(body.get("logprobs"), bool):
            return 400, _error("logprobs: Input should be a valid integer", "invalid_request_error")
        if f.models is not None and body.get("model") not in f.models:
            return 404, _error(
                f"The model `{body.get('model')}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        return None

    async def _api(self, req: _Request, reader, writer) -> bool:
        try:
            body = json.loads(req.body)
        except ValueError:
            body = None
        with self._lock:
            self._last_request = {"path": req.path, "body": body}
        refusal = self._refusal(req, body)
        if refusal is not None:
            self._record(str(refusal[0]))
            return await self._send(writer, refusal[0], refusal[1], req.keep_alive)
        f = self.faults
        prompt = _prompt_of(req.path, body)
        kind = self._decide(prompt)
        limits = dict(f.ratelimit_headers)
        if kind == "drop":
            self._record(kind)
            return False  # the connection handler closes the socket: no answer at all
        if kind == "429":
            self._record(kind)
            if f.retry_after is not None:
                limits["Retry-After"] = _retry_after_header(f.retry_after)
            error = _error("Rate limit reached (injected)", "rate_limit_error", "rate_limit_exceeded")
            return await self._send(writer, 429, error, req.keep_alive, limits)
        if kind in STATUS_KINDS:
            self._record(kind)
            status = int(kind)
            error_type = "server_error" if status >= 500 else "invalid_request_error"
            return await self._send(
                writer, status, _error(f"{HTTPStatus(status).phrase} (injected)", error_type), req.keep_alive
            )
        if kind == "malformed":
            self._record(kind)
            return await self._send(writer, 200, MALFORMED_BODY, req.keep_alive)
        delay = f.latency_s + (f.slow_s if kind == "slow" else 0.0)
        if delay:
            await asyncio.sleep(delay)
            if reader.at_eof() or writer.is_closing():
                self._record("abandoned")  # the client gave up (timed out) while we were slow
                return False
        if is_scoring_request(body):
            answer = scoring_answer(req.path, body, f, with_logprobs=kind != "no-logprobs")
        else:
            answer = build_answer(req.path, body, f, with_logprobs=kind != "no-logprobs")
        if kind == "surrogate":  # valid JSON whose answer text holds a lone surrogate escape (not UTF-8 text)
            self._record(kind)
            choice = answer["choices"][0]
            if "message" in choice:
                choice["message"]["content"] += "\ud800"
            else:
                choice["text"] += "\ud800"
            return await self._send(writer, 200, json.dumps(answer).encode(), req.keep_alive, limits)
        asked = _logprob_request(body)[0] is not None or is_scoring_request(body)
        if kind == "no-logprobs" and asked:
            self._record(kind)
        else:
            self._record("slow" if kind == "slow" else "ok", prompt)
        return await self._send(writer, 200, answer, req.keep_alive, limits)

    # -- background thread -----------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        """Serve from a daemon thread; returns once the port is bound."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.close_async())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start within 10 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server with fault injection.")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault per request")
    parser.add_argument("--fault-kinds", default="429,500,503,drop,malformed", help="comma-separated")
    parser.add_argument("--fail-first-n-per-prompt", type=int, default=0)
    parser.add_argument("--fail-kinds", default="500", help="comma-separated, cycled")
    parser.add_argument("--schedule", default="", help="comma-separated outcomes of the first requests")
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--slow", type=float, default=5.0, help="seconds of a 'slow' fault")
    parser.add_argument("--require-key", default=None)
    parser.add_argument("--auth-status", type=int, default=401)
    parser.add_argument("--model", default=None, help="model name answered")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", default="{}", help="JSON object of further Faults fields")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until killed; prints "READY <base_url>" once listening."""
    args = _arguments(argv)
    split = lambda text: [part for part in text.split(",") if part]  # noqa: E731
    faults = {
        "fault_rate": args.fault_rate,
        "fault_kinds": split(args.fault_kinds),
        "fail_first_n_per_prompt": args.fail_first_n_per_prompt,
        "fail_kinds": split(args.fail_kinds),
        "schedule": split(args.schedule),
        "retry_after": args.retry_after,
        "latency_s": args.latency,
        "slow_s": args.slow,
        "require_key": args.require_key,
        "auth_status": args.auth_status,
        "model": args.model,
        "seed": args.seed,
        **json.loads(args.faults),
    }
    server = FakeOpenAIServer(port=args.port, **faults)

    async def serve() -> None:
        url = await server.start_async()
        print(f"READY {url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
