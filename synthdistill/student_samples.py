"""The student's own sampled answers, and the teacher's scores of them (on-policy training and eval).

`sample_answers` has a student model answer prompts with its own `generate`. Each prompt's
samples are seeded by (seed, round, prompt id), so the same weights give the same samples
whatever the batch or the order: a round resumed after a crash regenerates exactly the samples
it had sent, and the scoring ledger (keyed by checkpoint, prompt and sample) answers them
without a request.

`score_samples` is the one way the teacher scores them: `synthdistill.scoring` (the same
scheduler, gate and ledger as a harvest); each score's `logprobs` are the teacher's tokens of
exactly the sample's text (and its end-of-turn token last when the student ended the answer),
with their top-k.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from synthdistill import scoring
from synthdistill.async_bridge import outside_running_loop
from synthdistill.chat_tokens import prompt_token_ids
from synthdistill.errors import SynthdistillError
from synthdistill.records import Message, content_hash
from synthdistill.scoring import SampleToScore
from synthdistill.tool_turns import template_messages


@dataclass(frozen=True)
class PromptToAnswer:
    """A training or held-out prompt: its id and the messages before the answer."""

    prompt_id: str
    messages: list[dict[str, Any]]


@dataclass(frozen=True)
class StudentSample:
    """One answer the student sampled; `checkpoint` names the weights that sampled it (the ledger's key)."""

    checkpoint: str
    prompt_id: str
    sample_index: int
    messages: list[dict[str, Any]]
    text: str
    finished: bool  # the student ended it with its end-of-turn token (not cut at max_new_tokens)


def sample_seed(seed: int, round_index: int, prompt_id: str) -> int:
    """The torch seed of one prompt's samples in one round."""
    return int(content_hash([seed, round_index, prompt_id], 12), 16)


def sample_answers(
    model,
    tokenizer,
    prompts: Sequence[PromptToAnswer],
    *,
    checkpoint: str,
    samples_per_prompt: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    round_index: int = 0,
) -> list[StudentSample]:
    """`samples_per_prompt` sampled answers per prompt (top_p 1), deterministic for given weights and seed."""
    import torch

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    samples = []
    for prompt in prompts:
        ids = prompt_token_ids(tokenizer, template_messages(prompt.messages))
        torch.manual_seed(sample_seed(seed, round_index, prompt.prompt_id))
        with torch.no_grad():
            output = model.generate(
                torch.tensor([ids], device=device),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
                do_sample=True,
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=max_new_tokens,
                num_return_sequences=samples_per_prompt,
                pad_token_id=pad,
            )
        for index, row in enumerate(output[:, len(ids) :].tolist()):
            finished = eos in row
            answer = row[: row.index(eos)] if finished else row
            text = tokenizer.decode(answer, skip_special_tokens=True)
            samples.append(StudentSample(checkpoint, prompt.prompt_id, index, prompt.messages, text, finished))
    model.train(was_training)
    return samples


def score_samples(config, samples: Sequence[StudentSample]) -> tuple[list[Any], Any]:
    """(the teacher's scores of `samples` in their order, the scoring summary): synthdistill.scoring, gated, ledger-backed."""
    asked = [
        SampleToScore(
            checkpoint=s.checkpoint,
            prompt_id=s.prompt_id,
            sample_index=s.sample_index,
            messages=[Message.model_validate({k: v for k, v in m.items() if v is not None}) for m in s.messages],
            text=s.text,
            ended=s.finished,
        )
        for s in samples
    ]
    result = outside_running_loop(lambda: asyncio.run(scoring.score_async(config, asked)))
    return result.scored, result.summary


def probe_teacher(config) -> str | None:
    """None when the teacher can score text (probed once); otherwise the reason it cannot."""
    try:
        scoring.probe_scoring(config)
    except SynthdistillError as error:
        return str(error)
    return None
