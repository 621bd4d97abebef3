"""Rate limit buckets: header parsing, adaptation to server limits, the shared pause."""

from __future__ import annotations

import asyncio
import time

import pytest

from synthdistill.rate_limit import (
    LimitState,
    RateLimiter,
    RateLimitHeaders,
    TokenBucket,
    parse_duration,
    parse_rate_limit_headers,
)
from synthdistill.teachers.openai_http import parse_retry_after


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3s", 3723.0),
        ("0.5", 0.5),
        ("250us", 0.00025),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "1x", "", "s1"])
def test_bad_durations(text):
    assert parse_duration(text) is None


def test_headers_parsed_case_insensitively_and_none_without_any():
    headers = {
        "X-RateLimit-Limit-Requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-remaining-tokens": "garbage",
    }
    assert parse_rate_limit_headers(headers) == RateLimitHeaders(
        requests=LimitState(500.0, 499.0, 0.12), tokens=LimitState(None, None, None)
    )
    assert parse_rate_limit_headers({"content-type": "application/json"}) is None


def test_retry_after_prefers_ms_then_seconds_then_exhausted_reset():
    assert parse_retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert (
        parse_retry_after(
            {
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-reset-tokens": "6s",
                "x-ratelimit-remaining-requests": "0",
            }
        )
        == 1.0
    )
    assert parse_retry_after({}) is None


def _clock():
    now = [100.0]
    return now, lambda: now[0]


def test_server_limit_lower_than_configured_wins_and_higher_is_ignored():
    now, clock = _clock()
    limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=None, clock=clock)
    limiter.observe(RateLimitHeaders(LimitState(limit=6000), LimitState()))
    assert limiter.requests.per_minute == 600
    limiter.observe(RateLimitHeaders(LimitState(limit=60), LimitState(limit=1000)))
    assert limiter.requests.per_minute == 60 and limiter.requests.capacity == 1.0
    assert limiter.tokens.per_minute == 1000  # unlimited until the server named a limit


def test_nothing_remaining_blocks_until_the_reset():
    now, clock = _clock()
    bucket = TokenBucket(6000, clock)
    bucket.observe_remaining(0, reset_s=2.5)
    assert bucket.blocked_until == 102.5 and bucket.level == 0
    bucket.observe_remaining(0, reset_s=1.0)  # a block never shortens
    assert bucket.blocked_until == 102.5


def test_pause_holds_every_sender_and_never_shortens():
    now, clock = _clock()
    limiter = RateLimiter(None, None, clock=clock)
    limiter.pause_for(3.0)
    limiter.pause_for(1.0)
    assert limiter.paused_until == 103.0


def test_bucket_paces_requests_in_real_time():
    async def fifteen() -> float:
        limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=None)  # 10/s, burst 10
        started = time.perf_counter()
        for _ in range(15):
            await limiter.acquire(1)
        return time.perf_counter() - started

    assert 0.4 <= asyncio.run(fifteen()) < 1.5  # the burst of 10 at once, then 5 at 10/s


def test_tokens_bucket_charges_the_estimated_tokens():
    async def run() -> float:
        limiter = RateLimiter(None, tokens_per_minute=600)  # 10 tokens/s, burst 10
        await limiter.acquire(5)
        started = time.perf_counter()
        await limiter.acquire(10)  # 5 left: waits for 5 more, 0.5 s
        return time.perf_counter() - started

    assert 0.45 <= asyncio.run(run()) < 1.0
