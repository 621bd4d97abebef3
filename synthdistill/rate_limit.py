"""Requests-per-minute and tokens-per-minute buckets that the harvester waits on.

The buckets start from `teacher.requests_per_minute` / `tokens_per_minute` and adapt
to what the server says in `x-ratelimit-*` headers (OpenAI, Together, Groq, vLLM
behind a gateway): a server limit lower than the configured one wins, and when a
server reports nothing left, every sender waits for its reset. A 429's Retry-After
pauses every sender, not only the one that was refused, so a rate limit never turns
into a retry storm.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
KINDS = ("requests", "tokens")


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration as sent in x-ratelimit-reset-* ("1s", "6m0s", "20ms"), or a bare number."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


@dataclass(frozen=True)
class LimitState:
    """What a server said about one limit (requests or tokens); any part may be missing."""

    limit: float | None = None  # per minute
    remaining: float | None = None
    reset_s: float | None = None


@dataclass(frozen=True)
class RateLimitHeaders:
    requests: LimitState
    tokens: LimitState


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitHeaders | None:
    """The `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers, or None when none were sent."""
    lowered = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}
    if not lowered:
        return None
    states = {}
    for kind in KINDS:
        reset = lowered.get(f"x-ratelimit-reset-{kind}")
        states[kind] = LimitState(
            limit=_number(lowered.get(f"x-ratelimit-limit-{kind}")),
            remaining=_number(lowered.get(f"x-ratelimit-remaining-{kind}")),
            reset_s=parse_duration(reset) if reset is not None else None,
        )
    return RateLimitHeaders(**states)


def burst(rate: float) -> float:
    """A bucket's capacity: one second's worth (at least one unit), so a fresh run starts at once."""
    return max(1.0, rate)


def least_seconds(per_minute: float, units: float) -> float:
    """The least time a fresh bucket of `per_minute` takes to let `units` through (its first burst is free)."""
    rate = per_minute / 60.0
    return max(0.0, units - burst(rate)) / rate


class TokenBucket:
    """A bucket of `capacity` units refilled at `per_minute / 60` units a second."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = burst(self.rate)
        self.level = self.capacity
        self.updated = clock()
        self.blocked_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def set_per_minute(self, per_minute: float) -> None:
        """Change the refill rate (a server announced a lower limit)."""
        self._refill()
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = burst(self.rate)
        self.level = min(self.level, self.capacity)

    def observe_remaining(self, remaining: float, reset_s: float | None) -> None:
        """The server counts `remaining` units; nothing left means nothing is sent before its reset."""
        self._refill()
        self.level = min(self.level, remaining)
        if remaining < 1 and reset_s is not None:
            self.blocked_until = max(self.blocked_until, self._clock() + reset_s)

    async def take(self, amount: float = 1.0) -> None:
        """Wait until `amount` units are available, then spend them (amount may exceed capacity)."""
        async with self._lock:
            while (wait := self.blocked_until - self._clock()) > 0:
                await asyncio.sleep(wait)
            self._refill()
            if self.level < amount:
                await asyncio.sleep((amount - self.level) / self.rate)
                self._refill()
            self.level -= amount


class RateLimiter:
    """Both buckets of a teacher (None = unlimited until a server names a limit) and a shared pause."""

    def __init__(
        self,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._clock = clock
        self.buckets: dict[str, TokenBucket | None] = {
            "requests": TokenBucket(requests_per_minute, clock) if requests_per_minute else None,
            "tokens": TokenBucket(tokens_per_minute, clock) if tokens_per_minute else None,
        }
        self.paused_until = 0.0

    @property
    def requests(self) -> TokenBucket | None:
        return self.buckets["requests"]

    @property
    def tokens(self) -> TokenBucket | None:
        return self.buckets["tokens"]

    def pause_for(self, seconds: float) -> None:
        """Hold every sender for `seconds` (a Retry-After, or the failure brake); pauses never shorten."""
        self.paused_until = max(self.paused_until, self._clock() + max(0.0, seconds))

    def observe(self, headers: RateLimitHeaders) -> None:
        """Adapt to a server's `x-ratelimit-*` headers (called by the teacher on every answer)."""
        for kind in KINDS:
            state: LimitState = getattr(headers, kind)
            bucket = self.buckets[kind]
            if state.limit:
                if bucket is None:
                    bucket = self.buckets[kind] = TokenBucket(state.limit, self._clock)
                elif state.limit < bucket.per_minute:
                    bucket.set_per_minute(state.limit)
            if bucket is not None and state.remaining is not None:
                bucket.observe_remaining(state.remaining, state.reset_s)

    async def acquire(self, estimated_tokens: int) -> None:
        """Wait for the shared pause, then for one request and `estimated_tokens` tokens."""
        while (wait := self.paused_until - self._clock()) > 0:
            await asyncio.sleep(wait)
        if self.requests:
            await self.requests.take(1)
        if self.tokens:
            # a request larger than the whole minute's budget would wait forever: cap it
            await self.tokens.take(min(estimated_tokens, self.tokens.per_minute))
