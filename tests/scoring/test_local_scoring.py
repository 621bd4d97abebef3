"""Scoring with the in-process teacher (SmolLM2-135M-Instruct): exact, one forward, full-vocabulary top-k."""

from __future__ import annotations

import asyncio
import math

import pytest
import yaml

from synthdistill.config import load_config
from synthdistill.records import Message, Sampling, TeacherRequest, request_key_for
from synthdistill.scoring import SampleToScore, probe_scoring, score_async, score_samples
from synthdistill.teachers.transformers_local import TransformersTeacher
from tests.harvest_fixtures import FAKE_POLICY, write_pack

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
QUESTION = "What is the capital of France?"


@pytest.fixture
def config(tmp_path, smollm2_dir):
    write_pack(tmp_path / "prompts" / "tiny", [QUESTION])
    (tmp_path / "policies").mkdir()
    policy = {**FAKE_POLICY, "applies_to": {"models": [MODEL], "hosts": []}}
    (tmp_path / "policies" / "fake.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    spec = {
        "name": "run",
        "teacher": {"backend": "transformers", "model": MODEL, "policy": "fake"},
        "harvest": {"packs": ["prompts/tiny"], "top_logprobs": 5},
    }
    (tmp_path / "distill.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_config(tmp_path / "distill.yaml")


def _greedy_answer(config) -> tuple[str, list[int], list[float]]:
    sampling = Sampling(temperature=0.0, max_tokens=12, top_logprobs=5)
    messages = [Message(role="user", content=QUESTION)]
    request = TeacherRequest(
        request_key=request_key_for(MODEL, messages, sampling, 0), messages=messages, sampling=sampling
    )
    teacher = TransformersTeacher(config.teacher)

    async def ask():
        try:
            return await teacher.complete(request)
        finally:
            await teacher.aclose()

    completion = asyncio.run(ask())
    return completion.text, completion.logprobs.token_ids, completion.logprobs.token_logprobs


def test_the_teachers_own_greedy_answer_scores_as_its_top_choice(config, tokenizer):
    text, generated_ids, generated_logprobs = _greedy_answer(config)
    ended = generated_ids[-1] == tokenizer.eos_token_id
    sample = SampleToScore(
        checkpoint="round-0000",
        prompt_id="p0",
        sample_index=0,
        messages=[Message(role="user", content=QUESTION)],
        text=text,
        ended=ended,
    )
    [score] = score_samples(config, [sample])
    lp = score.logprobs
    assert lp.token_ids == generated_ids  # the same tokens the teacher generated
    assert "".join(lp.tokens[:-1] if ended else lp.tokens) == text
    assert all(row[0] == token for row, token in zip(lp.top_ids, lp.token_ids))  # greedy: each is the top-1
    assert all(len(row) == 5 for row in lp.top_ids)
    assert all(math.isclose(a, b, abs_tol=2e-3) for a, b in zip(lp.token_logprobs, generated_logprobs))
    assert score.endpoint is None and score.style == "in-process" and score.model_answered == MODEL


def test_scores_equal_a_direct_forward_and_are_stored_once(config, smollm2_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    sample = SampleToScore(
        checkpoint="c1",
        prompt_id="p1",
        sample_index=0,
        messages=[Message(role="user", content="Name a colour.")],
        text="Purple, I think. 🙂",
    )
    result = asyncio.run(score_async(config, [sample]))
    assert result.summary.scored == 1 and result.summary.requests_sent == 1
    lp = result.scored[0].logprobs

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name a colour."}], add_generation_prompt=True, tokenize=True
    )
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    answer = tokenizer(sample.text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + answer])).logits[0, len(prompt) - 1 : -1]
    direct = logits.float().log_softmax(-1)
    assert lp.token_ids == answer
    for position, token in enumerate(answer):
        assert math.isclose(lp.token_logprobs[position], direct[position, token].item(), abs_tol=1e-4)
        values, ids = direct[position].topk(5)
        assert lp.top_ids[position] == ids.tolist()
    assert lp.tokens == [tokenizer.decode([t]) for t in answer]  # spelled as the in-process harvest spells them

    again = asyncio.run(score_async(config, [sample]))
    assert again.summary.requests_sent == 0 and again.summary.already_scored == 1
    assert again.scored == result.scored


def test_the_probe_of_the_in_process_teacher(config):
    probe = probe_scoring(config)
    assert probe.style == "in-process" and probe.top_k == 5 and probe.token_ids and probe.endpoint is None
