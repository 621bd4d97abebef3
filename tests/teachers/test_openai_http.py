"""OpenAIHTTPTeacher against the loopback server: one attempt per call, every fault classified, keys never leak."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from synthdistill.config import TeacherConfig
from synthdistill.errors import RetryableTeacherError, TeacherAuthError, TeacherError
from synthdistill.rate_limit import LimitState, RateLimitHeaders
from synthdistill.records import Message, Sampling, TeacherRequest
from synthdistill.teachers.openai_http import Endpoints, OpenAIHTTPTeacher
from tests.openai_server import FakeOpenAIServer, answer_text, token_logprob

KEY = "sk-test-SECRET-0123456789"


def _request(question: str = "What is 2+2?", top_logprobs: int = 3, key: str = "k1") -> TeacherRequest:
    return TeacherRequest(
        request_key=key,
        messages=[Message(role="user", content=question)],
        sampling=Sampling(top_logprobs=top_logprobs, max_tokens=64),
    )


def _teacher(base_url, api_key: str | None = None, **overrides) -> OpenAIHTTPTeacher:
    config = TeacherConfig(model="fake-model", base_url=base_url, **{"timeout_s": 5, **overrides})
    return OpenAIHTTPTeacher(config, api_key=api_key)


async def _ask(teacher: OpenAIHTTPTeacher, request: TeacherRequest | None = None):
    try:
        return await teacher.complete(request or _request())
    finally:
        await teacher.aclose()


def _fault(server: FakeOpenAIServer, kind: str, **overrides) -> RetryableTeacherError | TeacherError:
    server.configure(schedule=[kind])
    with pytest.raises((RetryableTeacherError, TeacherError)) as caught:
        asyncio.run(_ask(_teacher(server.base_url, **overrides)))
    return caught.value


def _dead_url() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_answer_with_logprobs_usage_and_endpoint():
    with FakeOpenAIServer() as server:
        teacher = _teacher(server.base_url)
        request = _request("What is 2+2?", top_logprobs=3)
        completion = asyncio.run(_ask(teacher, request))
        assert completion.text == answer_text("What is 2+2?") == "Answer to: What is 2+2?"
        assert completion.finish_reason == "stop"
        assert completion.model == "fake-model"
        assert completion.system_fingerprint == "fp_fake_openai"
        lp = completion.logprobs
        assert lp.tokens == ["Answer", " to:", " What", " is", " 2+2?"]
        assert lp.token_logprobs == [token_logprob(t) for t in range(5)]
        assert lp.top_tokens[1] == [" to:", "alt1", "alt2"]
        assert lp.top_logprobs[1] == [-0.25, -1.25, -2.25]
        assert completion.usage.prompt_tokens == 3 and completion.usage.completion_tokens == 5
        assert teacher.endpoint_for(request) == f"127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("429", "429"),
        ("500", "500"),
        ("502", "502"),
        ("503", "503"),
        ("504", "504"),
        ("408", "408"),
        ("drop", "connection"),
        ("malformed", "malformed"),
        ("no-logprobs", "missing-logprobs"),
    ],
)
def test_transient_faults_are_retryable_with_their_kind(kind, expected):
    with FakeOpenAIServer(retry_after=2) as server:
        error = _fault(server, kind)
    assert isinstance(error, RetryableTeacherError)
    assert error.kind == expected
    assert error.retry_after == (2.0 if kind == "429" else None)


def test_slow_answer_hits_the_whole_request_deadline():
    with FakeOpenAIServer(slow_s=3.0) as server:
        started = time.perf_counter()
        error = _fault(server, "slow", timeout_s=0.4)
        assert time.perf_counter() - started < 2.0
    assert isinstance(error, RetryableTeacherError) and error.kind == "timeout"
    assert "within 0.4 s" in str(error)


def test_client_errors_are_final_and_quote_the_server():
    with FakeOpenAIServer(models=["other-model"]) as server:
        error = _fault(server, "ok")
    assert type(error) is TeacherError
    assert "HTTP 404" in str(error) and "fake-model" in str(error)


@pytest.mark.parametrize("status", [401, 403])
def test_wrong_key_is_an_auth_error_that_names_the_variable_never_the_key(status):
    with FakeOpenAIServer(require_key="the-right-key", auth_status=status) as server:
        teacher = _teacher(server.base_url, api_key=KEY, api_key_env="MY_TEACHER_KEY")
        with pytest.raises(TeacherAuthError) as caught:
            asyncio.run(_ask(teacher))
    message = str(caught.value)
    assert f"HTTP {status}" in message and "MY_TEACHER_KEY" in message
    assert "Incorrect API key provided: [redacted]" in message  # the server echoed it; we scrubbed it
    assert KEY not in message and KEY not in repr(teacher)


def test_right_key_is_sent_as_bearer():
    with FakeOpenAIServer(require_key=KEY) as server:
        completion = asyncio.run(_ask(_teacher(server.base_url, api_key=KEY)))
    assert completion.text.startswith("Answer to:")


def test_failover_skips_a_dead_url():
    with FakeOpenAIServer() as server:
        dead = _dead_url()
        teacher = _teacher([dead, server.base_url], max_concurrency=1)

        async def three() -> list[str]:
            outcomes = []
            try:
                for i in range(3):
                    try:
                        await teacher.complete(_request(key=f"k{i}"))
                        outcomes.append("ok")
                    except RetryableTeacherError as exc:
                        outcomes.append(exc.kind)
            finally:
                await teacher.aclose()
            return outcomes

        # the first goes to the dead URL and cools it down; then every request goes to the live one
        assert asyncio.run(three()) == ["connection", "ok", "ok"]
        assert server.stats()["requests"] == 2


def test_endpoint_failing_in_a_row_cools_down_and_comes_back():
    now = [0.0]
    endpoints = Endpoints(["http://a/v1", "http://b/v1"], cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        endpoints.failed("http://a/v1")
    endpoints.succeeded("http://a/v1")  # a success breaks the run of failures
    endpoints.failed("http://a/v1")
    assert not endpoints.is_down("http://a/v1")
    endpoints.failed("http://a/v1")
    endpoints.failed("http://a/v1")
    assert endpoints.is_down("http://a/v1")
    assert [endpoints.pick() for _ in range(3)] == ["http://b/v1"] * 3
    now[0] = 10.0
    assert sorted(endpoints.pick() for _ in range(2)) == ["http://a/v1", "http://b/v1"]


def test_a_single_url_never_cools_down():
    endpoints = Endpoints(["http://a/v1"])
    for _ in range(5):
        endpoints.failed("http://a/v1")
    assert not endpoints.is_down("http://a/v1") and endpoints.pick() == "http://a/v1"


def test_rate_limit_headers_reach_the_listener():
    headers = {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1.5s",
        "x-ratelimit-limit-tokens": "90000",
    }
    seen: list[RateLimitHeaders] = []
    with FakeOpenAIServer(ratelimit_headers=headers) as server:
        teacher = _teacher(server.base_url)
        teacher.on_rate_limits = seen.append
        asyncio.run(_ask(teacher))
    assert seen == [RateLimitHeaders(requests=LimitState(600.0, 0.0, 1.5), tokens=LimitState(90000.0, None, None))]
