"""A scored student sample → a training row on the student's tokens, with the teacher's top-k as targets.

The row is the student's own tokenization of its answer text (the canonical one, as the KD
dataset's) and its end-of-turn token where it ended the answer, so the targets mean the same
thing whoever tokenized it:

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


def _cut(logprobs, count: int):
    """The first `count` positions of a TokenLogprobs."""
    return logprobs.model_copy(
        update={
            key: getattr(logprobs, key)[:count]
            for key in ("tokens", "token_ids", "token_logprobs", "top_tokens", "top_ids", "top_logprobs")
            if getattr(logprobs, key) is not None
        }
    )


def sample_targets(sample: StudentSample, score, tokenizer) -> tuple[AnswerTargets, bool]:
    """The teacher's targets on the student's tokens of the sample (+ its end-of-turn token); (targets, by id).

    When the student ended its answer the teacher scored its own end-of-turn token last; with the
    same tokenizer it is the student's and its top-k becomes that position's target, otherwise it
    is cut off and the student's end-of-turn token has no target.
    """
    logprobs = score.logprobs
    student_ids = list(tokenizer(sample.text, add_special_tokens=False)["input_ids"])
    wanted = student_ids + ([tokenizer.eos_token_id] if sample.finished else [])
    if logprobs.token_ids is not None and logprobs.top_ids is not None and list(logprobs.token_ids) == wanted:
        return exact_targets(logprobs.token_ids, logprobs.token_logprobs, logprobs.top_ids, logprobs.top_logprobs), True
    if getattr(score, "ended", False) and logprobs.tokens:
        logprobs = _cut(logprobs, len(logprobs.tokens) - 1)
    targets = align_answer(
        sample.text,
        logprobs.tokens,
        logprobs.token_logprobs,
        logprobs.top_tokens,
        logprobs.top_logprobs,
        tokenizer,
        max_unmapped_mass=MAX_UNMAPPED_MASS,
    )
    if sample.finished:
        targets.student_ids.append(tokenizer.eos_token_id)
        targets.kd_ids.append([])
        targets.kd_logprobs.append([])
        targets.masked["end-of-turn-of-another-tokenizer"] = 1 + targets.masked.get(
            "end-of-turn-of-another-tokenizer", 0
        )
    return targets, False


def on_policy_row(sample: StudentSample, targets: AnswerTargets, tokenizer, max_length: int) -> dict[str, Any] | None:
    """input_ids (prompt + answer tokens, the end-of-turn one included when the student ended it) and the KD columns.

    None when no position with a target fits in `max_length`.
    """
    prompt_ids = prompt_token_ids(tokenizer, template_messages(sample.messages))
    input_ids = (prompt_ids + list(targets.student_ids))[:max_length]
    answer_len = len(input_ids) - len(prompt_ids)
    if answer_len <= 0:
        return None
    kd_ids = [[] for _ in prompt_ids] + list(targets.kd_ids[:answer_len])
    kd_logprobs = [[] for _ in prompt_ids] + list(targets.kd_logprobs[:answer_len])
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
        targets, exact = sample_targets(sample, score, tokenizer)
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
