"""The retry policy: backoff bounds, Retry-After, the failure brake, what is final."""

from __future__ import annotations

import asyncio
import random

import pytest

from synthdistill.config import TeacherConfig
from synthdistill.errors import TeacherAuthError
from synthdistill.rate_limit import RateLimiter
from synthdistill.records import Message, Sampling, TeacherRequest
from synthdistill.retrying import FailureBrake, RequestFailed, RetryPolicy, backoff_seconds
from synthdistill.teachers.openai_http import OpenAIHTTPTeacher
from tests.openai_server import FakeOpenAIServer


def test_backoff_is_jittered_exponential_capped_and_at_least_retry_after():
    rng = random.Random(0)
    for attempt in range(1, 12):
        ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))
        waits = [backoff_seconds(attempt, None, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.8 * ceiling  # full jitter uses the whole range
    assert backoff_seconds(1, 7.0, rng) == 7.0  # Retry-After wins over a shorter backoff


def test_brake_pauses_after_a_run_of_faults_doubling_and_resets_on_success():
    brake = FailureBrake(threshold=3, first_pause_s=1.0, max_pause_s=3.0)
    assert [brake.failure() for _ in range(3)] == [None, None, 1.0]
    assert [brake.failure() for _ in range(3)] == [None, None, 2.0]
    assert [brake.failure() for _ in range(6)] == [None, None, 3.0, None, None, 3.0]
    brake.success()
    assert [brake.failure() for _ in range(3)] == [None, None, 1.0]
    assert brake.pauses == 5


def _request() -> TeacherRequest:
    return TeacherRequest(
        request_key="k", messages=[Message(role="user", content="hi")], sampling=Sampling(top_logprobs=0, max_tokens=8)
    )


def _ask(server: FakeOpenAIServer, max_retries: int, **teacher) -> tuple:
    teacher_ = OpenAIHTTPTeacher(TeacherConfig(model="fake-model", base_url=server.base_url, **teacher))
    sent = []
    policy = RetryPolicy(
        RateLimiter(None, None), FailureBrake(), max_retries, base_backoff_s=0.01, on_send=lambda: sent.append(1)
    )

    async def run():
        try:
            return await policy.ask(teacher_, _request(), 10)
        finally:
            await teacher_.aclose()

    return asyncio.run(run()), len(sent)


def test_retries_until_answered_and_counts_attempts():
    with FakeOpenAIServer(schedule=["500", "drop", "malformed"]) as server:
        (completion, attempts, latency_ms), sent = _ask(server, max_retries=3)
    assert completion.text == "Answer to: hi" and attempts == 4 == sent and latency_ms > 0


def test_retries_run_out_with_the_last_fault():
    with FakeOpenAIServer(schedule=["500", "503"]) as server:
        with pytest.raises(RequestFailed) as caught:
            _ask(server, max_retries=1)
    assert (caught.value.kind, caught.value.attempts) == ("503", 2)
    assert caught.value.message.startswith("503: HTTP 503 from 127.0.0.1")


def test_a_rejection_is_final_at_once_and_auth_passes_through():
    with FakeOpenAIServer(schedule=["400"]) as server:
        with pytest.raises(RequestFailed) as caught:
            _ask(server, max_retries=5)
        assert server.stats()["requests"] == 1
    assert caught.value.kind == "rejected" and caught.value.attempts == 1
    with FakeOpenAIServer(require_key="x") as server:
        with pytest.raises(TeacherAuthError):
            _ask(server, max_retries=5)
        assert server.stats()["requests"] == 1
