"""The embedded teacher, for real: SmolLM2-135M-Instruct in-process, batched, with top-k logprobs."""

from __future__ import annotations

import asyncio
import math
import re

import pytest

from synthdistill.config import TeacherConfig
from synthdistill.records import Message, Sampling, TeacherRequest, request_key_for
from synthdistill.teachers.transformers_local import TransformersTeacher

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
QUESTIONS = ["What is the capital of France?", "Name a colour of the sky.", "Say hello in Spanish."]


def _request(question: str, sampling: Sampling) -> TeacherRequest:
    messages = [Message(role="user", content=question)]
    return TeacherRequest(
        request_key=request_key_for(MODEL, messages, sampling, 0), messages=messages, sampling=sampling, sample_index=0
    )


@pytest.fixture(scope="module")
def teacher(smollm2_dir):
    return TransformersTeacher(TeacherConfig(backend="transformers", model=MODEL, batch_size=2))


async def _ask_all(teacher, requests):
    try:
        return await asyncio.gather(*(teacher.complete(r) for r in requests))
    finally:
        await teacher.aclose()


def test_batched_answers_carry_text_ids_and_top_k_logprobs(teacher, smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    sampling = Sampling(temperature=0.0, max_tokens=12, top_logprobs=5)
    completions = asyncio.run(_ask_all(teacher, [_request(q, sampling) for q in QUESTIONS]))

    assert len(completions) == 3
    for completion in completions:
        lp = completion.logprobs
        assert completion.model == MODEL and completion.text.strip()
        assert re.fullmatch(
            r"transformers-\S+ torch-\S+ (float32 cpu( onednn)?|bfloat16 cuda)", completion.system_fingerprint
        )
        assert completion.finish_reason in ("stop", "length")
        length = completion.usage.completion_tokens
        assert len(lp.token_ids) == len(lp.tokens) == len(lp.token_logprobs) == length
        assert all(len(row) == 5 for row in lp.top_ids) and all(len(row) == 5 for row in lp.top_logprobs)
        eos = tokenizer.eos_token_id
        text_ids = [t for t in lp.token_ids if t != eos]
        assert tokenizer.decode(text_ids) == completion.text
        if completion.finish_reason == "stop":
            assert lp.token_ids[-1] == eos  # the stop token is kept: the student learns to stop
        for position, token in enumerate(lp.token_ids):
            top = lp.top_logprobs[position]
            assert top == sorted(top, reverse=True) and top[0] <= 0.0
            assert sum(math.exp(v) for v in top) <= 1.0 + 1e-4
            # greedy: the chosen token is the teacher's top-1, with the same logprob
            assert lp.top_ids[position][0] == token
            assert lp.token_logprobs[position] == pytest.approx(top[0], abs=1e-5)
    assert "Paris" in completions[0].text


def test_without_logprobs_only_text_comes_back(teacher):
    sampling = Sampling(temperature=0.7, max_tokens=8, top_logprobs=0, seed=3)
    (completion,) = asyncio.run(_ask_all(teacher, [_request(QUESTIONS[1], sampling)]))
    assert completion.logprobs is None
    assert 1 <= completion.usage.completion_tokens <= 8


def test_a_sampled_answer_does_not_depend_on_its_batch(smollm2_dir):
    """The same request and seed give the same answer alone and batched with others (per-row generators)."""
    sampling = Sampling(temperature=0.9, max_tokens=16, top_logprobs=3, seed=11)
    requests = [_request(q, sampling) for q in QUESTIONS]

    def ask(batch_size, batch):
        teacher = TransformersTeacher(TeacherConfig(backend="transformers", model=MODEL, batch_size=batch_size))
        return asyncio.run(_ask_all(teacher, batch))

    together = ask(3, requests)
    alone = ask(1, requests[1:2])
    other_seed = ask(3, [_request(q, sampling.model_copy(update={"seed": 12})) for q in QUESTIONS])

    assert alone[0].text == together[1].text
    assert alone[0].logprobs.token_ids == together[1].logprobs.token_ids
    assert [c.text for c in other_seed] != [c.text for c in together]


def test_bfloat16_can_be_asked_for_on_a_cpu_and_gives_logprobs(smollm2_dir):
    """`teacher.dtype: bfloat16`: the fingerprint says so and the logprobs are logprobs. (Unlike float32, a row's
    answer then depends on its batch: benchmarks/results/embedded_teacher-2026-12-02.md.)"""
    sampling = Sampling(temperature=0.9, max_tokens=16, top_logprobs=3, seed=11)
    config = TeacherConfig(backend="transformers", model=MODEL, batch_size=3, device="cpu")
    teacher = TransformersTeacher(config.model_copy(update={"dtype": "bfloat16"}))
    completions = asyncio.run(_ask_all(teacher, [_request(q, sampling) for q in QUESTIONS]))
    for completion in completions:
        assert completion.system_fingerprint.endswith(" bfloat16 cpu")
        top = completion.logprobs.top_logprobs
        assert len(top) == completion.usage.completion_tokens >= 1
        assert all(row == sorted(row, reverse=True) and row[0] <= 0.0 for row in top)
        assert sum(math.exp(v) for v in top[0]) <= 1.0 + 1e-3


def test_row_sampler_draws_from_the_tempered_distribution():
    import torch

    from synthdistill.teachers.decode_loop import RowSampler

    probs = torch.tensor([0.6, 0.3, 0.1])
    keys = [f"{i:064x}" for i in range(6000)]
    rows = list(range(len(keys)))
    chosen = RowSampler(Sampling(temperature=1.0, seed=0), keys)(probs.log().repeat(len(keys), 1), rows)
    counts = torch.bincount(chosen, minlength=3) / len(keys)
    assert torch.allclose(counts, probs, atol=0.02)  # 3 sigma of a binomial at n = 6000 is ~0.019

    halved = RowSampler(Sampling(temperature=0.5, seed=0), keys)(probs.log().repeat(len(keys), 1), rows)
    sharpened = probs**2 / (probs**2).sum()  # temperature 0.5 squares the probabilities
    assert torch.allclose(torch.bincount(halved, minlength=3) / len(keys), sharpened, atol=0.02)
    greedy = RowSampler(Sampling(temperature=0.0), keys)
    assert greedy.greedy and greedy.generators == []
    assert greedy(probs.log().repeat(2, 1), [0, 1]).tolist() == [0, 0]
