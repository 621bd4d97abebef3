"""The logprob parsers on literal payloads, one per server family."""

from __future__ import annotations

import pytest

from synthdistill.teachers.logprob_formats import (
    LogprobFormatError,
    keep_top,
    parse_legacy,
    parse_logprobs,
    parse_openai_content,
    parse_token_id,
    token_text,
)


def test_openai_chat_with_null_bytes_as_llama_cpp_sends():
    payload = {
        "content": [
            {
                "token": "Hello",
                "logprob": -0.5,
                "bytes": None,
                "top_logprobs": [
                    {"token": "Hello", "logprob": -0.5, "bytes": None},
                    {"token": "Hi", "logprob": -1.25, "bytes": None},
                ],
            },
            {
                "token": " world",
                "logprob": -0.125,
                "bytes": None,
                "top_logprobs": [
                    {"token": " world", "logprob": -0.125, "bytes": None},
                    {"token": " there", "logprob": -2.5, "bytes": None},
                ],
            },
        ]
    }
    parsed = parse_logprobs(payload)
    assert parsed.tokens == ["Hello", " world"]
    assert parsed.token_ids is None
    assert parsed.token_logprobs == [-0.5, -0.125]
    assert parsed.top_tokens == [["Hello", "Hi"], [" world", " there"]]
    assert parsed.top_ids is None
    assert parsed.top_logprobs == [[-0.5, -1.25], [-0.125, -2.5]]


def test_openai_chat_with_bytes_keeps_the_token_string():
    # OpenAI spells a partial UTF-8 token as an escaped string and gives its bytes
    payload = {"content": [{"token": "\\xe2\\x80", "logprob": -0.1, "bytes": [226, 128], "top_logprobs": []}]}
    parsed = parse_logprobs(payload)
    assert parsed.tokens == ["\\xe2\\x80"]
    assert parsed.top_tokens == [[]]
    assert parsed.top_logprobs == [[]]


def test_llama_cpp_integer_ids_fill_token_ids():
    payload = {
        "content": [
            {
                "id": 9906,
                "token": "Hello",
                "logprob": -0.5,
                "bytes": [72, 101, 108, 108, 111],
                "top_logprobs": [
                    {"id": 9906, "token": "Hello", "logprob": -0.5, "bytes": None},
                    {"id": 13347, "token": "Hi", "logprob": -1.0, "bytes": None},
                ],
            },
        ]
    }
    parsed = parse_logprobs(payload)
    assert parsed.token_ids == [9906]
    assert parsed.top_ids == [[9906, 13347]]


def test_vllm_token_ids_are_parsed_and_raw_tokens_kept():
    # vLLM fills bytes from the "token_id:N" string itself, so they carry no text
    raw = list(b"token_id:791")
    payload = {
        "content": [
            {
                "token": "token_id:791",
                "logprob": -0.25,
                "bytes": raw,
                "top_logprobs": [
                    {"token": "token_id:791", "logprob": -0.25, "bytes": raw},
                    {"token": "token_id:32", "logprob": -3.0, "bytes": list(b"token_id:32")},
                ],
            },
            {
                "token": "token_id:1917",
                "logprob": 0.0,
                "bytes": None,
                "top_logprobs": [{"token": "token_id:1917", "logprob": 0.0, "bytes": None}],
            },
        ]
    }
    parsed = parse_logprobs(payload)
    assert parsed.tokens == ["token_id:791", "token_id:1917"]
    assert parsed.token_ids == [791, 1917]
    assert parsed.top_tokens == [["token_id:791", "token_id:32"], ["token_id:1917"]]
    assert parsed.top_ids == [[791, 32], [1917]]
    assert parsed.top_logprobs == [[-0.25, -3.0], [0.0]]


def test_id_spelled_token_takes_its_text_from_decodable_bytes():
    payload = {
        "content": [{"token": "token_id:15339", "logprob": -0.5, "bytes": list("héllo".encode()), "top_logprobs": []}]
    }
    parsed = parse_openai_content(payload["content"])
    assert parsed.tokens == ["héllo"]
    assert parsed.token_ids == [15339]


def test_token_text_keeps_the_raw_token_for_partial_utf8():
    assert token_text("token_id:226", [226, 128]) == "token_id:226"
    assert token_text("token_id:5", None) == "token_id:5"
    assert token_text("plain", [112]) == "plain"


def test_parse_token_id():
    assert parse_token_id("token_id:0") == 0
    assert parse_token_id("token_id:128001") == 128001
    assert parse_token_id("token_id:") is None
    assert parse_token_id(" token_id:12") is None
    assert parse_token_id("hello") is None


def test_mixed_ids_give_none_rather_than_a_partial_list():
    payload = {
        "content": [
            {"token": "token_id:1", "logprob": -0.1, "bytes": None, "top_logprobs": [{"token": "x", "logprob": -1.0}]},
            {"token": "plain", "logprob": -0.2, "bytes": None, "top_logprobs": []},
        ]
    }
    parsed = parse_logprobs(payload)
    assert parsed.token_ids is None
    assert parsed.top_ids is None


def test_together_legacy_shape_with_float_ids():
    payload = {
        "tokens": ["New", " York"],
        "token_logprobs": [-0.39648438, -2.026558e-6],
        "token_ids": [3648.0, 4356],
        "top_logprobs": [{"New": -0.39648438}, {" York": -2.026558e-6}],
    }
    parsed = parse_logprobs(payload)
    assert parsed.tokens == ["New", " York"]
    assert parsed.token_ids == [3648, 4356]
    assert parsed.token_logprobs == [-0.39648438, -2.026558e-6]
    assert parsed.top_tokens == [["New"], [" York"]]
    assert parsed.top_ids is None
    assert parsed.top_logprobs == [[-0.39648438], [-2.026558e-6]]


def test_openai_legacy_completions_ranks_alternatives_best_first():
    payload = {
        "tokens": [" Paris", "."],
        "token_logprobs": [-0.01, -0.5],
        "top_logprobs": [{" London": -5.0, " Paris": -0.01, " Lyon": -6.5}, {".": -0.5, "!": -1.5}],
        "text_offset": [27, 33],
    }
    parsed = parse_legacy(payload)
    assert parsed.tokens == [" Paris", "."]
    assert parsed.token_ids is None
    assert parsed.top_tokens == [[" Paris", " London", " Lyon"], [".", "!"]]
    assert parsed.top_logprobs == [[-0.01, -5.0, -6.5], [-0.5, -1.5]]


def test_fireworks_legacy_with_ids_and_missing_top():
    payload = {"tokens": ["A", "B"], "token_logprobs": [-1.0, -2.0], "token_ids": [65, 66], "top_logprobs": None}
    parsed = parse_logprobs(payload)
    assert parsed.token_ids == [65, 66]
    assert parsed.top_tokens == [[], []]
    assert parsed.top_logprobs == [[], []]


def test_vllm_legacy_completions_with_id_spelled_keys():
    payload = {
        "tokens": ["token_id:5"],
        "token_logprobs": [-0.5],
        "top_logprobs": [{"token_id:5": -0.5, "token_id:9": -0.75}],
    }
    parsed = parse_logprobs(payload)
    assert parsed.token_ids == [5]
    assert parsed.top_ids == [[5, 9]]
    assert parsed.top_logprobs == [[-0.5, -0.75]]


def test_legacy_top_as_list_of_objects():
    payload = {
        "tokens": ["A"],
        "token_logprobs": [-1.0],
        "top_logprobs": [
            [{"token": "A", "logprob": -1.0, "token_id": 65}, {"token": "B", "logprob": -2.0, "token_id": 66}]
        ],
    }
    parsed = parse_logprobs(payload)
    assert parsed.top_ids == [[65, 66]]
    assert parsed.top_tokens == [["A", "B"]]


@pytest.mark.parametrize("payload", [None, {}, {"content": None}, {"content": None, "refusal": None}])
def test_absent_logprobs_are_none(payload):
    assert parse_logprobs(payload) is None


def test_empty_content_is_an_empty_answer_not_absence():
    parsed = parse_logprobs({"content": []})
    assert parsed.tokens == [] and parsed.token_ids is None and parsed.top_logprobs == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("nope", "logprobs is str, expected an object"),
        ({"foo": 1}, "logprobs has neither 'content' nor 'tokens' (keys: ['foo'])"),
        ({"content": {"token": "a"}}, "logprobs.content is dict, expected a list"),
        ({"content": [{"logprob": -1.0}]}, "logprobs.content[0]: expected an object with a string 'token'"),
        ({"content": [{"token": "a", "logprob": None}]}, "logprobs.content[0]: logprob None is not a number"),
        (
            {"content": [{"token": "a", "logprob": -1, "top_logprobs": {"b": -2}}]},
            "logprobs.content[0].top_logprobs is not a list",
        ),
        ({"tokens": ["a", "b"], "token_logprobs": [-1.0]}, "logprobs.token_logprobs does not match logprobs.tokens"),
        ({"tokens": ["a"], "token_logprobs": [None]}, "logprobs.token_logprobs[0]: logprob None is not a number"),
        ({"tokens": ["a"], "token_logprobs": [-1.0], "token_ids": [1.5]}, "logprobs.token_ids holds 1.5"),
        (
            {"tokens": ["a"], "token_logprobs": [-1.0], "top_logprobs": [{"a": "x"}]},
            "logprobs.top_logprobs[0]: logprob 'x' is not a number",
        ),
    ],
)
def test_bad_shapes_raise_with_the_place(payload, message):
    with pytest.raises(LogprobFormatError) as info:
        parse_logprobs(payload)
    assert str(info.value).startswith(message)


def test_llama_cpp_python_adds_the_sampled_token_beyond_k_and_keep_top_trims_it():
    # llama-cpp-python 0.3: top-k sorted, then the sampled token appended when outside it; bytes null
    payload = {
        "content": [
            {
                "token": " blue",
                "logprob": -3.5,
                "bytes": None,
                "top_logprobs": [
                    {"token": " the", "logprob": -0.5, "bytes": None},
                    {"token": " a", "logprob": -1.5, "bytes": None},
                    {"token": " blue", "logprob": -3.5, "bytes": None},
                ],
            },
            {
                "token": ".",
                "logprob": -0.25,
                "bytes": None,
                "top_logprobs": [
                    {"token": ".", "logprob": -0.25, "bytes": None},
                    {"token": "!", "logprob": -2.0, "bytes": None},
                ],
            },
        ],
        "refusal": None,
    }
    parsed = keep_top(parse_logprobs(payload), 2)
    assert parsed.tokens == [" blue", "."] and parsed.token_logprobs == [-3.5, -0.25]
    assert parsed.top_tokens == [[" the", " a"], [".", "!"]]
    assert parsed.top_logprobs == [[-0.5, -1.5], [-0.25, -2.0]]


def test_keep_top_sorts_best_first_and_trims_ids_too():
    payload = {
        "tokens": ["A"],
        "token_logprobs": [-1.0],
        "top_logprobs": [
            [
                {"token": "B", "logprob": -2.0, "token_id": 66},
                {"token": "A", "logprob": -1.0, "token_id": 65},
                {"token": "C", "logprob": -3.0, "token_id": 67},
            ]
        ],
    }
    parsed = keep_top(parse_logprobs(payload), 2)
    assert parsed.top_tokens == [["A", "B"]] and parsed.top_ids == [[65, 66]] and parsed.top_logprobs == [[-1.0, -2.0]]
    unchanged = parse_logprobs({"tokens": ["A"], "token_logprobs": [-1.0], "top_logprobs": [{"A": -1.0}]})
    assert keep_top(unchanged, 5) is unchanged
