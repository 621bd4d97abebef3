"""Each server family's dialect: what is sent, what comes back, over real loopback HTTP."""

from __future__ import annotations

import asyncio

import pytest

from synthdistill.config import TeacherConfig
from synthdistill.errors import ConfigError, RetryableTeacherError, TeacherError
from synthdistill.records import Message, Sampling, TeacherRequest
from synthdistill.teachers import make_teacher
from synthdistill.teachers.openai_dialects import (
    build_chat_body,
    build_completions_body,
    parse_answer,
    render_prompt,
    style_for_host,
    style_from_models,
)
from synthdistill.teachers.openai_http import OpenAIHTTPTeacher
from tests.openai_server import FakeOpenAIServer, token_id, token_logprob

QUESTION = "What is 2+2?"
TOKENS = ["Answer", " to:", " What", " is", " 2+2?"]


def _request(top_logprobs: int = 3, messages: list[Message] | None = None, seed: int | None = 7) -> TeacherRequest:
    return TeacherRequest(
        request_key="k1",
        messages=messages or [Message(role="user", content=QUESTION)],
        sampling=Sampling(top_logprobs=top_logprobs, max_tokens=64, seed=seed),
    )


def _ask(base_url: str, request: TeacherRequest | None = None, **teacher) -> tuple[OpenAIHTTPTeacher, object]:
    config = TeacherConfig(model="fake-model", base_url=base_url, timeout_s=5, **teacher)
    client = make_teacher(config)

    async def once():
        try:
            return await client.complete(request or _request())
        finally:
            await client.aclose()

    return client, asyncio.run(once())


# -- request bodies -------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["openai", "ollama"])
def test_openai_like_chat_body_asks_with_a_boolean_and_one_choice(style):
    body = build_chat_body("m", _request(5), style)
    assert body == {
        "model": "m",
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 64,
        "n": 1,
        "seed": 7,
        "messages": [{"role": "user", "content": QUESTION}],
        "logprobs": True,
        "top_logprobs": 5,
    }


def test_llamacpp_body_also_switches_off_its_own_samplers():
    body = build_chat_body("m", _request(5), "llamacpp")
    assert body == {
        "model": "m",
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 64,
        "n": 1,
        "seed": 7,
        "messages": [{"role": "user", "content": QUESTION}],
        "logprobs": True,
        "top_logprobs": 5,
        "repeat_penalty": 1.0,
        "top_k": 0,
        "min_p": 0.0,
    }
    legacy = build_completions_body("m", _request(5), "llamacpp")
    assert (legacy["logprobs"], legacy["repeat_penalty"], legacy["top_k"], legacy["min_p"]) == (5, 1.0, 0, 0.0)


def test_vllm_chat_body_asks_for_token_ids():
    body = build_chat_body("m", _request(5), "vllm")
    assert (body["logprobs"], body["top_logprobs"], body["return_tokens_as_token_ids"]) == (True, 5, True)


def test_together_chat_body_sends_the_count_as_logprobs():
    body = build_chat_body("m", _request(5), "together")
    assert body["logprobs"] == 5 and "top_logprobs" not in body and "return_tokens_as_token_ids" not in body


def test_no_logprob_fields_when_none_are_asked():
    for style in ("openai", "vllm", "together"):
        body = build_chat_body("m", _request(0, seed=None), style)
        assert not {"logprobs", "top_logprobs", "return_tokens_as_token_ids", "seed"} & set(body)


def test_completions_body_has_a_prompt_and_an_integer_logprobs():
    assert build_completions_body("m", _request(5), "openai") == {
        "model": "m",
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 64,
        "n": 1,
        "seed": 7,
        "prompt": QUESTION,
        "logprobs": 5,
    }
    vllm = build_completions_body("m", _request(5), "vllm")
    assert vllm["logprobs"] == 5 and vllm["return_tokens_as_token_ids"] is True


def test_render_prompt_of_a_conversation():
    messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello."),
        Message(role="user", content="2+2?"),
    ]
    assert render_prompt(messages) == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: 2+2?\n\nAssistant:"
    assert render_prompt([Message(role="user", content="Once upon")]) == "Once upon"


def test_style_detection_by_host_and_by_models_listing():
    assert style_for_host("https://api.together.xyz/v1") == "together"
    assert style_for_host("https://api.together.ai/v1") == "together"
    assert style_for_host("https://nottogether.xyz/v1") is None
    assert style_for_host("http://127.0.0.1:8000/v1") is None
    assert style_from_models({"object": "list", "data": [{"id": "Qwen/Qwen3-8B", "owned_by": "vllm"}]}) == "vllm"
    assert style_from_models({"object": "list", "data": [{"id": "m", "owned_by": "me"}]}) == "llamacpp"
    assert style_from_models({"object": "list", "data": [{"id": "m", "owned_by": "llamacpp"}]}) == "llamacpp"
    assert style_from_models({"object": "list", "data": [{"id": "llama3", "owned_by": "library"}]}) == "openai"
    assert style_from_models({"object": "list", "data": []}) == "openai"
    assert style_from_models(None) == "openai"


def test_unknown_style_is_a_config_error():
    config = TeacherConfig(model="m", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="unknown teacher.api_style 'sglang'"):
        OpenAIHTTPTeacher(config, style="sglang")


# -- literal answers ------------------------------------------------------------------------


def test_legacy_completions_answer_as_openai_sends_it():
    payload = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [
            {
                "text": " Paris.",
                "index": 0,
                "finish_reason": "stop",
                "logprobs": {
                    "tokens": [" Paris", "."],
                    "token_logprobs": [-0.01, -0.5],
                    "top_logprobs": [{" Paris": -0.01, " London": -5.0}, {".": -0.5, "!": -1.5}],
                    "text_offset": [27, 33],
                },
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
    completion = parse_answer(payload, want_logprobs=True, fallback_model="asked", endpoint="completions")
    assert completion.text == " Paris." and completion.model == "gpt-3.5-turbo-instruct"
    assert completion.system_fingerprint is None
    assert completion.logprobs.tokens == [" Paris", "."]
    assert completion.logprobs.top_tokens == [[" Paris", " London"], [".", "!"]]
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 2)


def test_completions_answer_without_text_is_malformed():
    payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
    with pytest.raises(RetryableTeacherError, match="choices\\[0\\].text is not a string") as caught:
        parse_answer(payload, want_logprobs=False, fallback_model="m", endpoint="completions")
    assert caught.value.kind == "malformed"


# -- each dialect over HTTP -----------------------------------------------------------------


def test_vllm_auto_detected_from_models_listing_gives_token_ids():
    with FakeOpenAIServer(dialect="vllm") as server:
        teacher, completion = _ask(server.base_url)
        stats = server.stats()
    assert teacher.style == "vllm" and stats["models_listed"] == 1
    assert stats["last_request"]["body"]["return_tokens_as_token_ids"] is True
    lp = completion.logprobs
    assert lp.token_ids == [token_id(t) for t in TOKENS]
    assert lp.top_ids[1] == [token_id(" to:"), token_id("alt1"), token_id("alt2")]
    assert lp.token_logprobs == [token_logprob(t) for t in range(5)]
    # vLLM's bytes spell "token_id:N" too, so the id-spelled token is kept as text
    assert lp.tokens == [f"token_id:{token_id(t)}" for t in TOKENS]


def test_auto_detects_llamacpp_once_and_switches_off_its_samplers():
    with FakeOpenAIServer(dialect="llamacpp") as server:
        config = TeacherConfig(model="fake-model", base_url=server.base_url, timeout_s=5)
        teacher = make_teacher(config)

        async def three():
            try:
                return [
                    await teacher.complete(_request().model_copy(update={"request_key": f"k{i}"})) for i in range(3)
                ]
            finally:
                await teacher.aclose()

        completions = asyncio.run(three())
        stats = server.stats()
    assert teacher.style == "llamacpp" and stats["models_listed"] == 1 and stats["requests"] == 3
    body = stats["last_request"]["body"]
    assert "return_tokens_as_token_ids" not in body and (body["repeat_penalty"], body["top_k"]) == (1.0, 0)
    # llama-cpp-python sends bytes null and no ids: the token strings are all there is
    assert completions[0].logprobs.token_ids is None and completions[0].logprobs.top_ids is None
    assert completions[0].logprobs.tokens == TOKENS


def test_auto_against_an_unknown_owner_is_openai():
    with FakeOpenAIServer(dialect="ollama") as server:
        teacher, completion = _ask(server.base_url)
        body = server.stats()["last_request"]["body"]
    assert teacher.style == "openai" and completion.logprobs.tokens == TOKENS
    assert not {"repeat_penalty", "return_tokens_as_token_ids"} & set(body)


def test_explicit_style_sends_no_models_probe():
    with FakeOpenAIServer(dialect="ollama") as server:
        teacher, completion = _ask(server.base_url, api_style="ollama")
        stats = server.stats()
    assert stats["models_listed"] == 0 and teacher.style == "ollama"
    assert stats["last_request"]["body"]["logprobs"] is True and stats["last_request"]["body"]["top_logprobs"] == 3
    assert completion.logprobs.tokens == TOKENS and completion.logprobs.token_ids is None
    assert completion.logprobs.top_logprobs[0] == [0.0, -1.0, -2.0]


def test_together_gets_an_integer_and_answers_in_the_legacy_shape_with_ids():
    with FakeOpenAIServer(dialect="together") as server:
        _, completion = _ask(server.base_url, api_style="together")
        assert server.stats()["last_request"]["body"]["logprobs"] == 3
    lp = completion.logprobs
    assert lp.tokens == TOKENS and lp.token_ids == [token_id(t) for t in TOKENS]
    assert lp.top_tokens[2] == [" What", "alt1", "alt2"] and lp.top_logprobs[2] == [-0.5, -1.5, -2.5]


def test_together_refuses_a_boolean_logprobs():
    with FakeOpenAIServer(dialect="together") as server, pytest.raises(TeacherError, match="HTTP 400.*valid integer"):
        _ask(server.base_url, api_style="openai")


@pytest.mark.parametrize("dialect, ids", [("openai", False), ("vllm", True), ("llamacpp", False)])
def test_legacy_completions_endpoint(dialect, ids):
    with FakeOpenAIServer(dialect=dialect) as server:
        _, completion = _ask(server.base_url, endpoint="completions")
        last = server.stats()["last_request"]
    assert last["path"] == "/v1/completions" and last["body"]["prompt"] == QUESTION and last["body"]["logprobs"] == 3
    assert completion.text == "Answer to: What is 2+2?" and completion.finish_reason == "stop"
    assert completion.model == "fake-model" and completion.system_fingerprint == "fp_fake_openai"
    lp = completion.logprobs
    assert lp.token_logprobs == [token_logprob(t) for t in range(5)]
    assert lp.top_logprobs[3] == [-0.75, -1.75, -2.75]
    if ids:
        assert lp.token_ids == [token_id(t) for t in TOKENS]
        assert lp.top_ids[3] == [token_id(" is"), token_id("alt1"), token_id("alt2")]
    else:
        assert lp.tokens == TOKENS and lp.token_ids is None and lp.top_tokens[3] == [" is", "alt1", "alt2"]


def test_answered_model_and_missing_fingerprint_are_kept_as_sent():
    with FakeOpenAIServer(model="served-name", system_fingerprint=None) as server:
        _, completion = _ask(server.base_url, api_style="openai")
    assert completion.model == "served-name" and completion.system_fingerprint is None
