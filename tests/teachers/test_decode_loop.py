"""The teacher's own decoding loop against `model.generate`: the same tokens and logprobs, row for row."""

from __future__ import annotations

import pytest

from synthdistill.chat_tokens import prompt_token_ids
from synthdistill.records import Sampling
from synthdistill.teachers.decode_loop import RowSampler, decode

QUESTIONS = [
    "What is the capital of France?",
    "Write one long sentence about the history of the bicycle in Europe.",
    "Say hi.",
    "List three prime numbers.",
    "Explain in detail why the sky is blue, with examples.",
    "Say hi.",  # the same prompt twice (samples_per_prompt 2): its whole prompt is a prefix of the other
]
KEYS = [f"{i:064x}" for i in range(len(QUESTIONS))]


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype="float32").eval()
    prompts = [prompt_token_ids(tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]
    return model, tokenizer, prompts


def _generate(model, tokenizer, prompts, sampling, keys, top_k):
    """The oracle: transformers' generate() with the same per-row sampler as a logits processor."""
    import torch
    from transformers import LogitsProcessor

    sampler = RowSampler(sampling, keys)
    steps = []

    class Record(LogitsProcessor):
        def __call__(self, input_ids, scores):
            steps.append(scores.float().log_softmax(-1))
            if sampler.greedy:
                return scores
            chosen = sampler(scores, list(range(len(keys))))  # every row draws every step, as before
            return torch.full_like(scores, float("-inf")).scatter(1, chosen[:, None], 0.0)

    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    out = model.generate(
        input_ids=torch.tensor([[pad] * (width - len(p)) + p for p in prompts]),
        attention_mask=torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts]),
        max_new_tokens=sampling.max_tokens,
        do_sample=False,
        logits_processor=[Record()],
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=pad,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    answers = []
    for row, ids in enumerate(out[:, width:].tolist()):
        length = ids.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in ids else len(ids)
        answers.append(
            (
                ids[:length],
                [steps[i][row].topk(top_k).indices.tolist() for i in range(length)],
                [steps[i][row].topk(top_k).values.tolist() for i in range(length)],
                [steps[i][row][ids[i]].item() for i in range(length)],
            )
        )
    return answers


def _decode(smollm2, prompts, sampling: Sampling, keys: list[str], **options):
    """The loop under test, with the sampling's max_tokens and top-k."""
    model, tokenizer, _ = smollm2
    return decode(
        model,
        prompts,
        max_new_tokens=sampling.max_tokens,
        eos_ids=[tokenizer.eos_token_id],
        pad_id=tokenizer.pad_token_id,
        top_k=sampling.top_logprobs,
        sampler=RowSampler(sampling, keys),
        **options,
    )


def _flat(nested: list[list[float]]) -> list[float]:
    return [value for inner in nested for value in inner]


@pytest.mark.parametrize(
    ("temperature", "prefill_group", "drop_finished"),
    [(0.0, 16, True), (0.8, 16, True), (0.8, 2, True), (0.8, 16, False)],
)
def test_decode_gives_generates_tokens_and_logprobs_row_for_row(smollm2, temperature, prefill_group, drop_finished):
    """Prompts prefilled as one group or as three groups of two (shared prefix once, the rest padded per group);
    ended rows dropped from the batch or (a cache that cannot drop rows) kept, fed padding."""
    model, tokenizer, prompts = smollm2
    sampling = Sampling(temperature=temperature, max_tokens=40, top_logprobs=4, seed=5)
    expected = _generate(model, tokenizer, prompts, sampling, KEYS, top_k=4)
    rows = _decode(smollm2, prompts, sampling, KEYS, prefill_group=prefill_group, drop_finished=drop_finished)
    lengths = [len(r.token_ids) for r in rows]
    assert len(set(lengths)) > 1, lengths  # rows leave the batch at different steps: the loop drops them
    for row, (ids, top_ids, top_values, own) in zip(rows, expected):
        assert row.token_ids == ids
        assert row.finish_reason == ("stop" if ids[-1] == tokenizer.eos_token_id else "length")
        assert row.top_ids == top_ids
        # a row's float32 logits move in the 6th digit as the batch around it shrinks; its tokens do not
        assert _flat(row.top_logprobs) == pytest.approx(_flat(top_values), abs=1e-4)
        assert row.chosen_logprobs == pytest.approx(own, abs=1e-4)


@pytest.fixture(scope="module")
def smollm2_onednn(smollm2_dir):
    """SmolLM2 as the embedded teacher runs it on a CPU: its linear layers on oneDNN."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthdistill.teachers.onednn_linear import use_onednn_linears

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype="float32").eval()
    assert use_onednn_linears(model) == 30 * 7 + 1
    return model, tokenizer, [prompt_token_ids(tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]


@pytest.mark.parametrize("kernels", ["pytorch", "onednn"])
def test_a_row_decoded_alone_is_the_row_decoded_in_a_batch(request, kernels):
    """The same tokens; the logprobs move in the 5th digit (attention's sums are not batch-invariant)."""
    smollm2 = request.getfixturevalue("smollm2" if kernels == "pytorch" else "smollm2_onednn")
    prompts = smollm2[2]
    sampling = Sampling(temperature=1.0, max_tokens=30, top_logprobs=2, seed=9)

    def run(indices):
        return _decode(smollm2, [prompts[i] for i in indices], sampling, [KEYS[i] for i in indices])

    together = run(range(len(prompts)))
    for i in (1, 2, 4):
        (alone,) = run([i])
        assert alone.token_ids == together[i].token_ids
        assert alone.top_ids == together[i].top_ids
        assert _flat(alone.top_logprobs) == pytest.approx(_flat(together[i].top_logprobs), abs=1e-4)


def test_without_top_k_only_tokens_are_kept(smollm2):
    (row,) = _decode(smollm2, smollm2[2][:1], Sampling(temperature=0.0, max_tokens=5, top_logprobs=0), KEYS[:1])
    assert 1 <= len(row.token_ids) <= 5
    assert row.top_ids == row.top_logprobs == row.chosen_logprobs == []


def test_a_batch_of_one_prompt_sampled_three_times_matches_generate(smollm2):
    """Every prompt the same (samples_per_prompt 3): all but its last token are shared and run once."""
    model, tokenizer, prompts = smollm2
    sampling = Sampling(temperature=1.0, max_tokens=20, top_logprobs=3, seed=2)
    same = [prompts[1]] * 3
    expected = _generate(model, tokenizer, same, sampling, KEYS[:3], top_k=3)
    rows = _decode(smollm2, same, sampling, KEYS[:3])
    assert [r.token_ids for r in rows] == [ids for ids, *_ in expected]
    assert len({tuple(r.token_ids) for r in rows}) == 3  # three different samples


def test_rows_leave_attention_caches_but_not_one_with_recurrent_layers():
    from transformers import DynamicCache, Gemma2Config, Qwen3NextConfig

    from synthdistill.teachers.decode_loop import can_drop_rows

    small = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2}
    sliding = Gemma2Config(**small, intermediate_size=64, vocab_size=100, head_dim=16)
    hybrid = Qwen3NextConfig(**small, intermediate_size=64, vocab_size=100)
    assert can_drop_rows(DynamicCache(config=sliding))  # sliding-window and full attention layers
    assert not can_drop_rows(DynamicCache(config=hybrid))  # linear-attention (recurrent) layers


def test_gumbel_noise_on_the_contenders_chooses_what_noise_on_every_token_chooses():
    """`gumbel_argmax` skips the logarithms of tokens that cannot win; the winner is the same."""
    import torch

    from synthdistill.teachers.decode_loop import gumbel, gumbel_argmax

    generator = torch.Generator().manual_seed(3)
    chosen_elsewhere = 0
    for trial in range(24):
        scores = torch.randn(64, 49152, generator=generator) * (1 + trial % 4) / 0.7
        if trial % 3 == 0:
            scores[:, ::7] = float("-inf")  # cut by top-p
        if trial % 4 == 0:
            scores[:, 10:60] = scores[:, 10:11]  # ties: the first index wins, as argmax has it
        scores[0, 123] = 1e4  # one certain token
        uniform = torch.rand(64, 49152, generator=generator, dtype=torch.float64)
        every = (scores + gumbel(uniform).float()).argmax(dim=-1)
        assert torch.equal(gumbel_argmax(scores, uniform), every)
        assert every[0].item() == 123
        chosen_elsewhere += (every != scores.argmax(dim=-1)).sum().item()
    assert chosen_elsewhere > 24 * 64 // 4  # the noise does choose: many draws are not the top score


def test_the_last_rows_take_the_places_of_rows_that_ended():
    from synthdistill.teachers.decode_loop import compacted_order

    assert compacted_order([0, None, 2, 3, None, 5]) == [0, 5, 2, 3]
    assert compacted_order([None, 1, None, 3, 4]) == [4, 1, 3]
    assert compacted_order([7, 8, None]) == [0, 1]
    assert compacted_order([None, None, 2]) == [2]
    assert compacted_order([None, None]) == []
