"""`teacher_nll_on_student_samples`: how teacher-like what the student says is (eval.json, every method).

Each model (untrained, trained) samples one answer to each of the first `student.on_policy.eval_prompts`
held-out prompts (temperature and length of `student.on_policy`, seeded: both models answer the
same prompts with the same seeds), and the teacher scores those answers; the metric is the
teacher's mean negative log-likelihood per teacher token of them (lower = closer to what the
teacher would say).

The teacher scores them through `synthdistill.scoring` (gated, ledger-backed; the end-of-turn
token counts where the student ended its answer): the in-process teacher always can; a server
only when one probe request shows it returns prompt logprobs. A teacher that cannot score
leaves the metric null, and `teacher_nll_on_student_samples_note` says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthdistill.config import DistillConfig
from synthdistill.digests import file_sha256
from synthdistill.errors import SynthdistillError
from synthdistill.student_samples import PromptToAnswer, probe_teacher, sample_answers, score_samples

METRIC = "teacher_nll_on_student_samples"
EVAL_ROUND = -1  # the seed stream of eval's samples, apart from every training round's


def held_out_prompts(held_out_rows: list[dict[str, Any]], count: int) -> list[PromptToAnswer]:
    """The first `count` distinct held-out prompts, in the split's order."""
    prompts: dict[str, PromptToAnswer] = {}
    for row in held_out_rows:
        if len(prompts) == count:
            break
        prompts.setdefault(row["prompt_id"], PromptToAnswer(row["prompt_id"], row["messages"][:-1]))
    return list(prompts.values())


class ScoringJudge:
    """The teacher through synthdistill.scoring: NLL from the logprobs it gives each sample's tokens."""

    def nll(self, config: DistillConfig, samples) -> float | None:
        scores, _ = score_samples(config, samples)
        logprobs = [lp for score in scores for lp in score.logprobs.token_logprobs]
        return round(-sum(logprobs) / len(logprobs), 6) if logprobs else None


def judge_for(config: DistillConfig) -> tuple[Any, str | None]:
    """(judge, None), or (None, why the teacher cannot score)."""
    if config.require_student("eval").on_policy.eval_prompts == 0:
        return None, "student.on_policy.eval_prompts is 0"
    reason = probe_teacher(config)
    if reason is not None:
        return None, f"the teacher cannot score text: {reason}"
    return ScoringJudge(), None


def weights_id(model_dir: Path) -> str:
    """A short id of a model folder's weights, for the scoring ledger's checkpoint key."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    return "-".join(file_sha256(path)[:12] for path in files) or Path(model_dir).name


def student_sample_nll(
    config: DistillConfig, judge, model, tokenizer, model_dir: Path, prompts: list[PromptToAnswer]
) -> tuple[float | None, str | None]:
    """(the teacher's NLL per token of `model`'s sampled answers to `prompts`, None) or (None, why not)."""
    if judge is None:
        return None, None
    settings = config.require_student("eval").on_policy
    samples = sample_answers(
        model,
        tokenizer,
        prompts,
        checkpoint=f"eval/{weights_id(model_dir)}",
        samples_per_prompt=1,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        seed=config.require_student("eval").seed,
        round_index=EVAL_ROUND,
    )
    try:
        return judge.nll(config, samples), None
    except SynthdistillError as error:  # scoring failed (a refusal, errors past their retries): eval goes on
        return None, f"scoring the student's samples failed: {error}"
