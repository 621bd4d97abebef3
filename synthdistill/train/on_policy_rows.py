"""A scored student sample → a training row on the student's tokens, with the teacher's top-k as targets.

The row is the student's own tokenization of its answer text (the canonical one, as the KD
dataset's), so the targets mean the same thing whoever tokenized it:

- same tokenizer (the teacher's scored token ids spell the student's ids exactly): the
  teacher's top-k ids are copied position by position (`exact_targets`);
- another tokenizer: the teacher's tokens are aligned to the student's by byte offsets
  (`align_answer`, synthdistill/alignment.py); positions without a match get no target.

Only positions with targets carry loss (the on-policy loss has no cross-entropy: the student
does not imitate its own samples). `teacher_target_share` is the share of the student's answer
tokens that got teacher targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthdistill.alignment import AnswerTargets, align_answer, exact_targets
from synthdistill.chat_tokens import IGNORE_INDEX, prompt_token_ids
from synthdistill.student_samples import StudentSample
from synthdistill.tool_turns import template_messages

# As the KD build: a position whose unmappable candidates carry more mass than this is masked.
MAX_UNMAPPED_MASS = 0.1


@dataclass
class TargetCounts:
    """Student answer tokens and how many received teacher targets, over the samples mapped so far."""

    tokens: int = 0
    with_targets: int = 0
    exact: int = 0  # samples mapped by id
    aligned: int = 0  # samples mapped by byte offsets

    @property
    def share(self) -> float | None:
        return round(self.with_targets / self.tokens, 6) if self.tokens else None

    def add(self, targets: AnswerTargets, exact: bool) -> None:
        self.tokens += len(targets.student_ids)
        self.with_targets += targets.kept
        self.exact += exact
        self.aligned += not exact

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "share": self.share}


def sample_targets(sample: StudentSample, logprobs, tokenizer) -> tuple[AnswerTargets, bool]:
    """The teacher's targets on the student's tokens of the sample's text; (targets, mapped by id)."""
    student_ids = list(tokenizer(sample.text, add_special_tokens=False)["input_ids"])
    if logprobs.token_ids is not None and logprobs.top_ids is not None and list(logprobs.token_ids) == student_ids:
        return exact_targets(logprobs.token_ids, logprobs.token_logprobs, logprobs.top_ids, logprobs.top_logprobs), True
    targets = align_answer(
        sample.text,
        logprobs.tokens,
        logprobs.token_logprobs,
        logprobs.top_tokens,
        logprobs.top_logprobs,
        tokenizer,
        max_unmapped_mass=MAX_UNMAPPED_MASS,
    )
    return targets, False


def on_policy_row(sample: StudentSample, targets: AnswerTargets, tokenizer, max_length: int) -> dict[str, Any] | None:
    """input_ids (prompt + answer, + end-of-turn when the student ended it) and the KD columns; None if no target fits."""
    prompt_ids = prompt_token_ids(tokenizer, template_messages(sample.messages))
    answer_ids, kd_ids, kd_logprobs = list(targets.student_ids), list(targets.kd_ids), list(targets.kd_logprobs)
    if sample.finished:  # the teacher scored the text alone: the end-of-turn token has no target
        answer_ids.append(tokenizer.eos_token_id)
        kd_ids.append([])
        kd_logprobs.append([])
    input_ids = (prompt_ids + answer_ids)[:max_length]
    answer_len = len(input_ids) - len(prompt_ids)
    if answer_len <= 0:
        return None
    kd_ids = [[] for _ in prompt_ids] + kd_ids[:answer_len]
    kd_logprobs = [[] for _ in prompt_ids] + kd_logprobs[:answer_len]
    kd_mask = [1 if ids else 0 for ids in kd_ids]
    if not any(kd_mask):
        return None
    return {
        "input_ids": input_ids,
        "labels": [IGNORE_INDEX] * len(input_ids),  # no cross-entropy on the student's own samples
        "kd_ids": kd_ids,
        "kd_logprobs": kd_logprobs,
        "kd_mask": kd_mask,
    }


def scored_rows(
    samples: list[StudentSample], scores: list[Any], tokenizer, max_length: int, counts: TargetCounts
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training rows of the scored samples (those with at least one target) and one record per sample."""
    rows, records = [], []
    for sample, score in zip(samples, scores):
        targets, exact = sample_targets(sample, score.logprobs, tokenizer)
        counts.add(targets, exact)
        row = on_policy_row(sample, targets, tokenizer, max_length)
        if row is not None:
            rows.append(row)
        records.append(
            {
                "checkpoint": sample.checkpoint,
                "prompt_id": sample.prompt_id,
                "sample_index": sample.sample_index,
                "text": sample.text,
                "finished": sample.finished,
                "teacher_tokens": len(score.logprobs.tokens),
                "student_tokens": len(targets.student_ids),
                "student_tokens_with_targets": targets.kept,
                "mapping": "exact-ids" if exact else f"aligned ({targets.spelling})",
                "endpoint": getattr(score, "endpoint", None),
                "trained": row is not None,
            }
        )
    return rows, records
