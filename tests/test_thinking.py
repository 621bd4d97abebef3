"""Thinking teachers: traces split from answers (every server shape), found in the logprobs, knobs sent per style."""

from __future__ import annotations

import pytest

from synthdistill.records import ReasoningKnobs, Sampling, TeacherRequest
from synthdistill.teachers.openai_dialects import build_body, knob_fields, parse_answer
from synthdistill.thinking import answer_parts, locate_spans, split_inline


def test_split_inline_block_and_r1_style_open_in_the_prompt():
    assert split_inline("<think>\nhmm, 2+2\n</think>\n\nIt is 4.") == ("hmm, 2+2", "It is 4.")
    assert split_inline("hmm, 2+2\n</think>\n\nIt is 4.") == ("hmm, 2+2", "It is 4.")  # R1: <think> was in the prompt
    assert split_inline("<think>\n\n</think>\n\nIt is 4.") == (None, "It is 4.")  # Qwen3 thinking off
    assert split_inline("It is 4.") == (None, "It is 4.")
    assert split_inline("<think>\nstill thinking", "length") == ("still thinking", "")
    assert split_inline("<think> not closed", "stop") == (None, "<think> not closed")


def test_answer_parts_prefers_the_parsed_field_and_removes_a_duplicate_inline_block():
    assert answer_parts("\n\nIt is 4.", "\nhmm\n", "stop") == ("hmm", "It is 4.")
    # llama.cpp deepseek-legacy: the trace in reasoning_content and still inline in content
    assert answer_parts("<think>hmm</think>It is 4.", "hmm", "stop") == ("hmm", "It is 4.")
    assert answer_parts(None, "cut off mid-thou", "length") == ("cut off mid-thou", None)


def test_locate_spans_finds_trace_and_answer_tokens_even_when_an_edge_token_straddles():
    tokens = ["<think>", "\nhmm,", " two", " plus", " two", "\n</think>", "\n\nIt", " is", " 4.", "<|im_end|>"]
    spans = locate_spans(tokens, "hmm, two plus two", "It is 4.")
    assert spans.reasoning == [1, 5] and spans.answer == [6, 9] and spans.note is None
    missing = locate_spans(["token_id:1", "token_id:2"], "hmm", "It is 4.")
    assert missing.reasoning is None and missing.answer is None and "trace not found" in missing.note
    assert locate_spans(["It", " is"], None, "It is").answer == [0, 2]


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_parse_answer_reads_both_reasoning_fields(field):
    payload = {"choices": [{"message": {"content": "\n\nIt is 4.", field: "hmm"}, "finish_reason": "stop"}]}
    completion = parse_answer(payload, want_logprobs=False, fallback_model="m")
    assert (completion.reasoning, completion.text) == ("hmm", "It is 4.")


def test_truncated_while_thinking_is_an_empty_truncated_answer_not_malformed():
    payload = {"choices": [{"message": {"content": None, "reasoning": "hmm, let"}, "finish_reason": "length"}]}
    completion = parse_answer(payload, want_logprobs=False, fallback_model="m")
    assert (completion.reasoning, completion.text, completion.finish_reason) == ("hmm, let", "", "length")


def test_completions_endpoint_splits_inline_think():
    payload = {"choices": [{"text": "<think>hmm</think>\n\nIt is 4.", "finish_reason": "stop"}]}
    completion = parse_answer(payload, want_logprobs=False, fallback_model="m", endpoint="completions")
    assert (completion.reasoning, completion.text) == ("hmm", "It is 4.")


KNOBS = Sampling(
    reasoning=ReasoningKnobs(effort="low", budget_tokens=512), chat_template_kwargs={"enable_thinking": True}
)


@pytest.mark.parametrize(
    "style, sent, ignored",
    [
        ("openai", {"reasoning_effort": "low"}, ["budget_tokens", "chat_template_kwargs"]),
        (
            "vllm",
            {
                "reasoning_effort": "low",
                "thinking_token_budget": 512,
                "chat_template_kwargs": {"enable_thinking": True},
            },
            [],
        ),
        (
            "llamacpp",
            {"thinking_budget_tokens": 512, "chat_template_kwargs": {"enable_thinking": True}},
            ["effort"],
        ),
        ("together", {"reasoning_effort": "low"}, ["budget_tokens", "chat_template_kwargs"]),
        ("ollama", {"reasoning_effort": "low"}, ["budget_tokens", "chat_template_kwargs"]),
    ],
)
def test_knobs_in_the_form_each_style_takes(style, sent, ignored):
    assert knob_fields(KNOBS, style) == (sent, ignored)
    body = build_body("m", TeacherRequest(request_key="k", messages=[], sampling=KNOBS), style, "chat")
    assert {k: body[k] for k in sent} == sent
    assert knob_fields(KNOBS, style, "completions") == ({}, ["effort", "budget_tokens", "chat_template_kwargs"])


def test_knobs_change_the_request_key_only_when_set():
    from synthdistill.records import request_key_for

    plain = request_key_for("m", [], Sampling(), 0)
    assert plain == request_key_for("m", [], Sampling(reasoning=None, chat_template_kwargs=None), 0)
    assert plain != request_key_for("m", [], Sampling(chat_template_kwargs={"enable_thinking": False}), 0)
    assert plain != request_key_for("m", [], Sampling(reasoning=ReasoningKnobs(effort="high")), 0)
