"""The teacher behind an OpenAI-compatible API (vLLM, llama.cpp, Ollama, Together, SGLang, OpenAI, …).

Chat or legacy completions (`teacher.endpoint`) in the server's dialect
(`teacher.api_style`; requests and answers are in `openai_dialects`).

One HTTP attempt per `complete` call: the harvester's scheduler owns retries, so
every fault is classified here and raised at once:

    429                          RetryableTeacherError("429", retry_after=Retry-After / x-ratelimit-reset-*)
    408, 409, 5xx                RetryableTeacherError("<status>")
    no answer within timeout_s   RetryableTeacherError("timeout")     (a deadline on the whole request)
    refused / reset / dropped    RetryableTeacherError("connection")
    not JSON, no choices         RetryableTeacherError("malformed")
    logprobs asked, none sent    RetryableTeacherError("missing-logprobs")
    401, 403                     TeacherAuthError (names the env var, never the key)
    other 4xx                    TeacherError with the server's message

With several base URLs, one that refuses connections or fails 3 times in a row
cools down and the others take its requests (`Endpoints`). Every answer's
`x-ratelimit-*` headers go to `on_rate_limits` (the harvester's rate limiter).

The API key lives only in the client's Authorization header; every message that
leaves this module passes through `_scrub`, so a server that echoes the key cannot
leak it into an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import httpx

from synthdistill.errors import ConfigError, RetryableTeacherError, TeacherAuthError, TeacherError
from synthdistill.rate_limit import RateLimitHeaders, parse_duration, parse_rate_limit_headers
from synthdistill.records import Completion, TeacherRequest
from synthdistill.teachers.openai_dialects import (
    API_STYLES,
    ENDPOINTS,
    KnobWarnings,
    build_body,
    build_chat_body,
    endpoint_path,
    malformed,
    parse_answer,
    parse_chat_response,
    style_for_host,
    style_from_models,
)

log = logging.getLogger(__name__)

__all__ = ["Endpoints", "OpenAIHTTPTeacher", "build_chat_body", "parse_chat_response", "parse_retry_after"]
COOLDOWN_S = 30.0
FAILURES_BEFORE_COOLDOWN = 3
# faults that say an endpoint is unwell (5xx count too); 429 and missing logprobs do not
ENDPOINT_FAULTS = ("timeout", "connection", "malformed", "408")


def _http_date_seconds(value: str, now: datetime) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _holds_lone_surrogate(raw: str, payload: object) -> bool:
    """Whether a parsed JSON answer holds a lone surrogate (checked only when the text has a surrogate escape)."""
    if "\\ud" not in raw and "\\uD" not in raw:
        return False
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait before retrying, from the headers of a 429/503 answer; None when they say nothing.

    `retry-after-ms` (OpenAI) wins over `Retry-After` (seconds or an HTTP date), which
    wins over the x-ratelimit-reset-requests/-tokens durations; of those, the limit
    whose `x-ratelimit-remaining-*` is 0 is the one that was hit.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    if "retry-after" in lowered:
        value = lowered["retry-after"].strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            seconds = _http_date_seconds(value, now or datetime.now(UTC))
            if seconds is not None:
                return seconds
    resets = {}
    for kind in ("requests", "tokens"):
        raw = lowered.get(f"x-ratelimit-reset-{kind}")
        seconds = parse_duration(raw) if raw is not None else None
        if seconds is not None:
            resets[kind] = seconds
    exhausted = [s for kind, s in resets.items() if lowered.get(f"x-ratelimit-remaining-{kind}", "").strip() == "0"]
    chosen = exhausted or list(resets.values())
    return max(chosen) if chosen else None


def endpoint_host(base_url: str) -> str:
    """host:port of a base URL (the default port filled in), as recorded in provenance."""
    url = httpx.URL(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.host}:{port}"


def error_message(response: httpx.Response) -> str:
    """The server's own words from an error answer (OpenAI `error.message`, FastAPI `detail`, or the text)."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        for key in ("error", "detail", "message"):
            if payload.get(key):
                return str(payload[key])[:500]
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase


class Endpoints:
    """Round-robin over base URLs with failover.

    A URL that refuses connections, or fails `failures_before_cooldown` times in a row
    (5xx, timeouts, dropped connections), is skipped for `cooldown_s` while another
    remains; when every URL is cooling down, the one that comes back first is used.
    """

    def __init__(
        self,
        base_urls: list[str],
        cooldown_s: float = COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
        failures_before_cooldown: int = FAILURES_BEFORE_COOLDOWN,
    ):
        if not base_urls:
            raise ConfigError("teacher.base_url is empty: the openai backend needs at least one URL")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.cooldown_s = cooldown_s
        self.failures_before_cooldown = failures_before_cooldown
        self._clock = clock
        self._next = 0
        self._down_until: dict[str, float] = {}
        self._failures_in_a_row: dict[str, int] = {}

    def _choose(self) -> int:
        now = self._clock()
        n = len(self.base_urls)
        for step in range(n):
            index = (self._next + step) % n
            if self._down_until.get(self.base_urls[index], 0.0) <= now:
                return index
        # every URL is cooling down: try the one that comes back first
        return min(range(n), key=lambda i: self._down_until[self.base_urls[i]])

    def peek(self) -> str:
        """The URL the next request would go to."""
        return self.base_urls[self._choose()]

    def pick(self) -> str:
        """The URL for the next request; advances the round-robin."""
        index = self._choose()
        self._next = (index + 1) % len(self.base_urls)
        return self.base_urls[index]

    def is_down(self, base_url: str) -> bool:
        return self._down_until.get(base_url, 0.0) > self._clock()

    def mark_down(self, base_url: str, reason: str = "refused the connection") -> None:
        """Skip `base_url` for the cool-down period (a no-op with a single URL: there is nowhere else to go)."""
        if len(self.base_urls) > 1:
            self._down_until[base_url] = self._clock() + self.cooldown_s
            self._failures_in_a_row[base_url] = 0
            log.warning(
                "teacher endpoint %s %s; skipping it for %.0f s", endpoint_host(base_url), reason, self.cooldown_s
            )

    def failed(self, base_url: str) -> None:
        """A server-side fault at `base_url`; enough in a row and it cools down."""
        count = self._failures_in_a_row.get(base_url, 0) + 1
        self._failures_in_a_row[base_url] = count
        if count >= self.failures_before_cooldown:
            self.mark_down(base_url, f"failed {count} times in a row")

    def succeeded(self, base_url: str) -> None:
        self._failures_in_a_row[base_url] = 0


class OpenAIHTTPTeacher:
    """Teacher over an OpenAI-compatible HTTP API (chat or legacy completions), one attempt per call.

    `style` overrides `config.api_style`; `auto` is settled before the first request
    (`_settle_style`), and `self.style` then names the dialect in use.
    """

    backend = "openai"

    def __init__(
        self,
        config,
        api_key: str | None = None,
        *,
        style: str | None = None,
        cooldown_s: float = COOLDOWN_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        style = style or getattr(config, "api_style", "auto")
        if style not in API_STYLES:
            raise ConfigError(f"unknown teacher.api_style '{style}' (expected one of: {', '.join(API_STYLES)})")
        self.endpoint: str = getattr(config, "endpoint", "chat")
        if self.endpoint not in ENDPOINTS:
            raise ConfigError(f"unknown teacher.endpoint '{self.endpoint}' (expected one of: {', '.join(ENDPOINTS)})")
        if style == "auto":
            style = next((s for s in map(style_for_host, config.base_urls) if s), "auto")
        self.style: str = style
        self._style_lock: asyncio.Lock | None = None
        self.config = config
        self.model: str = config.model
        self._api_key = api_key or None
        self._endpoints = Endpoints(config.base_urls, cooldown_s)
        self._transport = transport
        self._idle: list[httpx.AsyncClient] = []
        self._lent: set[httpx.AsyncClient] = set()
        # request_key → base URL of its last attempt, so endpoint_for names the host that answered
        self._used: OrderedDict[str, str] = OrderedDict()
        self._used_cap = max(4096, 16 * config.max_concurrency)
        # the harvester's rate limiter listens here to adapt to x-ratelimit-* headers
        self.on_rate_limits: Callable[[RateLimitHeaders], None] | None = None
        self.knob_warnings = KnobWarnings()  # thinking knobs the dialect has no field for

    def __repr__(self) -> str:
        hosts = ", ".join(endpoint_host(u) for u in self._endpoints.base_urls)
        return f"OpenAIHTTPTeacher(model={self.model!r}, endpoints=[{hosts}], key={'set' if self._api_key else 'none'})"

    def endpoint_for(self, request: TeacherRequest) -> str:
        """host:port that `request` went to (its last attempt), or would go to next."""
        used = self._used.get(request.request_key)
        return endpoint_host(used if used is not None else self._endpoints.peek())

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    def _new_client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        per_url = len(self._endpoints.base_urls)
        return httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(self.config.timeout_s, pool=None),
            limits=httpx.Limits(max_connections=per_url, max_keepalive_connections=per_url),
            http1=True,
            http2=False,
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
        )

    @contextlib.asynccontextmanager
    async def _http(self):
        """A client with its own keep-alive connection(s), lent for one request.

        One small client per concurrent request instead of one shared pool: httpcore scans
        its whole pool on every request, which costs more than the rest of a harvest at
        64 connections. Clients are built lazily, so they belong to the loop that uses them.
        """
        client = self._idle.pop() if self._idle else self._new_client()
        self._lent.add(client)
        try:
            yield client
        finally:
            self._lent.discard(client)
            if not client.is_closed:
                self._idle.append(client)

    def _remember(self, request_key: str, base_url: str) -> None:
        self._used[request_key] = base_url
        self._used.move_to_end(request_key)
        while len(self._used) > self._used_cap:
            self._used.popitem(last=False)

    async def _settle_style(self, base_url: str) -> None:
        """Resolve `auto` from the server's /models listing (vLLM says `owned_by: vllm`), once.

        An unreachable server leaves it unresolved: the request fails and is retried,
        and the next attempt asks again.
        """
        if self._style_lock is None:
            self._style_lock = asyncio.Lock()
        async with self._style_lock:
            if self.style != "auto":
                return
            try:
                async with asyncio.timeout(min(self.config.timeout_s, 10.0)):
                    async with self._http() as client:
                        response = await client.get(f"{base_url}/models")
            except (httpx.HTTPError, TimeoutError):
                return
            try:
                payload = response.json() if response.status_code == 200 else None
            except ValueError:
                payload = None
            self.style = style_from_models(payload)
            log.info("teacher at %s speaks the %s dialect", endpoint_host(base_url), self.style)

    async def complete(self, request: TeacherRequest) -> Completion:
        """Send one request and parse the answer (one attempt, no retry)."""
        base_url = self._endpoints.pick()
        if self.style == "auto":
            await self._settle_style(base_url)
        return await self._tracked(request.request_key, base_url, self._attempt(base_url, request))

    async def post_json(self, key: str, path: str, body: dict) -> tuple[dict, str]:
        """One attempt at any POST (`path` after the base URL): (the JSON answer, host:port that gave it).

        Failover, fault classes, rate-limit headers and key scrubbing as for `complete`
        (on-policy scoring sends its own requests through here).
        """
        base_url = self._endpoints.pick()
        payload = await self._tracked(key, base_url, self._post(base_url, path, body))
        return payload, endpoint_host(base_url)

    async def _tracked(self, key: str, base_url: str, attempt):
        """Await one attempt at `base_url`, counting its fault (or success) towards the URL's cool-down."""
        self._remember(key, base_url)
        try:
            result = await attempt
        except RetryableTeacherError as exc:
            if exc.kind in ENDPOINT_FAULTS or exc.kind.startswith("5"):
                self._endpoints.failed(base_url)
            raise
        self._endpoints.succeeded(base_url)
        return result

    async def _attempt(self, base_url: str, request: TeacherRequest) -> Completion:
        host = endpoint_host(base_url)
        # still auto only when /models was unreachable: the plain openai dialect is safe anywhere
        style = "openai" if self.style == "auto" else self.style
        body = build_body(self.model, request, style, self.endpoint)
        self.knob_warnings.note(request.sampling, style, self.endpoint)
        payload = await self._post(base_url, endpoint_path(self.endpoint), body)
        try:
            return parse_answer(
                payload,
                want_logprobs=request.sampling.top_logprobs > 0,
                fallback_model=self.model,
                source=f"answer from {host}",
                endpoint=self.endpoint,
                top_k=request.sampling.top_logprobs,
            )
        except RetryableTeacherError as exc:
            # the server's own words may be quoted in the message: scrub them
            raise RetryableTeacherError(exc.kind, self._scrub(str(exc)[len(exc.kind) + 2 :])) from None

    async def _post(self, base_url: str, path: str, body: dict):
        """POST `body` and return the parsed JSON answer; every fault classified (module docstring)."""
        host = endpoint_host(base_url)
        try:
            # httpx's timeout bounds each read; this bounds the whole request (a server trickling bytes)
            async with asyncio.timeout(self.config.timeout_s):
                async with self._http() as client:
                    response = await client.post(f"{base_url}{path}", json=body)
        except (httpx.TimeoutException, TimeoutError) as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                self._endpoints.mark_down(base_url, "did not accept the connection in time")
            raise RetryableTeacherError(
                "timeout", f"no answer from {host} within {self.config.timeout_s:g} s ({type(exc).__name__})"
            ) from None
        except httpx.UnsupportedProtocol as exc:
            raise TeacherError(f"teacher base_url {base_url!r} is not an http(s) URL: {exc}") from None
        except httpx.ConnectError as exc:
            self._endpoints.mark_down(base_url)
            raise RetryableTeacherError("connection", f"cannot connect to {host}: {self._scrub(str(exc))}") from None
        except httpx.TransportError as exc:
            raise RetryableTeacherError(
                "connection", f"connection to {host} failed: {type(exc).__name__}: {self._scrub(str(exc))}"
            ) from None
        except httpx.DecodingError as exc:
            raise malformed(f"answer from {host} could not be decoded: {exc}") from None
        self._observe_limits(response.headers)
        if not 200 <= response.status_code < 300:
            raise self._status_error(response, host)
        try:
            payload = response.json()
        except ValueError:
            raise malformed(f"answer from {host} is not JSON: {self._scrub(response.text[:120])!r}") from None
        if _holds_lone_surrogate(response.text, payload):
            # JSON can spell a lone surrogate ("\\ud800"); it is not text, and no ledger, hash or dataset can hold it
            raise malformed(f"answer from {host} holds a lone surrogate escape (not valid Unicode text)")
        return payload

    def _observe_limits(self, headers: httpx.Headers) -> None:
        if self.on_rate_limits is not None:
            limits = parse_rate_limit_headers(headers)
            if limits is not None:
                self.on_rate_limits(limits)

    def _status_error(self, response: httpx.Response, host: str) -> Exception:
        """The exception for a non-200 answer."""
        status = response.status_code
        message = self._scrub(error_message(response))
        if status in (401, 403):
            if self.config.api_key_env:
                hint = f"check the API key in the environment variable {self.config.api_key_env}"
            else:
                hint = "no API key was sent: set teacher.api_key_env to the NAME of the variable holding it"
            return TeacherAuthError(f"teacher at {host} refused the request (HTTP {status}): {message}; {hint}")
        if status == 429 or status in (408, 409) or status >= 500:
            return RetryableTeacherError(
                str(status), f"HTTP {status} from {host}: {message}", retry_after=parse_retry_after(response.headers)
            )
        return TeacherError(f"teacher at {host} rejected the request (HTTP {status}): {message}")

    async def aclose(self) -> None:
        """Close every connection."""
        clients, self._idle = [*self._idle, *self._lent], []
        self._lent = set()
        for client in clients:
            await client.aclose()
