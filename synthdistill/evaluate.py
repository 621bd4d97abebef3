"""Untrained vs trained student on the held-out split (design §9): eval.json and eval.png.

Metrics, each over the teacher's held-out answers:
- `nll_per_token`: mean negative log-likelihood of the teacher's answer tokens;
- `top1_agreement`: share of answer positions where the student's most likely token is the
  teacher's most likely one (the top KD candidate where logprobs exist, else the answer token);
- `kd_kl`: KL(teacher top-k + tail || student) on KD positions (None without a KD dataset);
- `verifier_pass_rate`: per pack with a verifier, the share of the student's own greedy
  answers to held-out prompts that pass it; after a thinking teacher's traces were kept, also
  `verifier_pass_rate_by_mode` with thinking on and off (synthdistill/eval_thinking.py);
- for tool packs `tool_call_match` (the student's greedy calls against the teacher's) and for
  packs with a response_format `schema_valid_rate` (synthdistill/eval_tools.py);
- `teacher_nll_on_student_samples`: the teacher's NLL per token of the student's own sampled
  answers to held-out prompts, wherever a teacher can score (synthdistill/eval_student_samples.py).

Where the teacher's weights are at hand (the in-process `transformers` teacher, or a teacher
model that is a local folder), the teacher is scored the same way (`teacher`) and
`nll_gap_closed` = (untrained − trained) / (untrained − teacher) says how much of the teacher
the student recovered. Per-token NLLs compare only over the same tokens: with a teacher whose
vocabulary differs from the student's, the teacher is scored on its own tokenization of the
held-out conversations and the gap is left null (`nll_gap_closed_note` says why).

`samples` holds the first `student.eval_samples` held-out prompts with the teacher's answer
beside each student's own greedy answer (`synthdistill view` shows them); the greedy answers
are generated once per model and prompt, for the verifiers and the samples alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthdistill.chat_tokens import IGNORE_INDEX, prompt_token_ids
from synthdistill.config import DistillConfig
from synthdistill.errors import StageError
from synthdistill.eval_student_samples import METRIC, held_out_prompts, judge_for, student_sample_nll
from synthdistill.eval_thinking import has_traces, pass_rates_by_mode
from synthdistill.eval_tools import answer_format_shares
from synthdistill.model_store import quiet_model_loading, resolve_model
from synthdistill.packs import configured_packs
from synthdistill.packs.verifiers import verify_answer
from synthdistill.policy import recheck_use
from synthdistill.run_layout import HELD_OUT_SPLIT
from synthdistill.safe_write import write_text
from synthdistill.tool_turns import template_messages
from synthdistill.train import read_train_summary
from synthdistill.train.data import PaddingCollator, kd_token_rows, read_rows, sft_token_rows
from synthdistill.train.model_card import write_model_card
from synthdistill.train.student_init import prepare_student

EVAL_BATCH = 8
# Generation on a CPU is slow: the verifier pass rate looks at this many held-out prompts per pack.
MAX_GENERATIONS_PER_PACK = 32


def eval_rows(config: DistillConfig, tokenizer) -> tuple[list[dict[str, Any]], bool]:
    """Held-out token rows (KD rows when the KD dataset exists) and whether they carry KD targets."""
    student = config.require_student("eval")
    layout = config.layout
    if layout.dataset_dir("kd").exists():
        return kd_token_rows(read_rows(layout, "kd", HELD_OUT_SPLIT)), True
    return sft_token_rows(read_rows(layout, "sft", HELD_OUT_SPLIT), tokenizer, student.max_length), False


def batch_metrics(logits, batch: dict[str, Any]) -> dict[str, float]:
    """Sums over one batch: nll, agreeing positions, label positions, KL sum, KD positions."""
    import torch

    from synthdistill.train.kd_loss import sparse_kl

    logits = logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    positions = labels != IGNORE_INDEX
    logp = torch.log_softmax(logits, dim=-1)
    safe_labels = labels.clamp(min=0)
    nll = -logp.gather(-1, safe_labels[..., None]).squeeze(-1)[positions].sum()
    teacher_top1 = safe_labels
    sums = {"nll": float(nll), "label_tokens": int(positions.sum()), "kl": 0.0, "kd_tokens": 0}
    if "kd_ids" in batch:
        kd_ids, kd_logprobs = batch["kd_ids"][:, 1:], batch["kd_logprobs"][:, 1:]
        kd_positions = batch["kd_mask"][:, 1:] & torch.isfinite(kd_logprobs).any(-1)
        best = kd_ids.gather(-1, kd_logprobs.argmax(-1, keepdim=True)).squeeze(-1)
        teacher_top1 = torch.where(kd_positions, best, safe_labels)
        if kd_positions.any():
            valid = torch.isfinite(kd_logprobs[kd_positions])
            kl = sparse_kl(
                logits.gather(-1, kd_ids)[kd_positions],
                torch.logsumexp(logits[kd_positions], dim=-1),
                kd_logprobs[kd_positions],
                valid,
                1.0,
                "bucket",
            )
            sums["kl"], sums["kd_tokens"] = float(kl.sum()), int(kd_positions.sum())
    sums["agree"] = int((logits.argmax(-1) == teacher_top1)[positions].sum())
    return sums


def load_model(model_dir: Path):
    """A model folder in fp32, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    return model


def score_model(model, rows: list[dict[str, Any]], pad_token_id: int, has_kd: bool) -> dict[str, Any]:
    """nll_per_token, top1_agreement and kd_kl of one model over the held-out rows."""
    import torch

    collate = PaddingCollator(pad_token_id)
    totals = {"nll": 0.0, "agree": 0, "label_tokens": 0, "kl": 0.0, "kd_tokens": 0}
    with torch.no_grad():
        for start in range(0, len(rows), EVAL_BATCH):
            batch = collate(rows[start : start + EVAL_BATCH])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            for key, value in batch_metrics(logits, batch).items():
                totals[key] += value
    tokens = max(totals["label_tokens"], 1)
    return {
        "nll_per_token": round(totals["nll"] / tokens, 6),
        "top1_agreement": round(totals["agree"] / tokens, 6),
        "kd_kl": round(totals["kl"] / totals["kd_tokens"], 6) if has_kd and totals["kd_tokens"] else None,
        "answer_tokens": totals["label_tokens"],
    }


def verifier_packs(config: DistillConfig) -> list:
    """The run's packs that have a verifier."""
    return [pack for pack in configured_packs(config) if pack.verify is not None]


def answer_limit(config: DistillConfig, pack) -> int:
    """New tokens a student may generate for a pack's prompt: the pack's max_tokens, else the harvest's."""
    sampling = pack.spec.sampling if pack is not None else None
    return sampling.max_tokens if sampling and sampling.max_tokens else config.harvest.max_tokens


class GreedyAnswers:
    """One model's greedy answers by prompt id, each generated once (the verifiers and the samples share them)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer, self.answers = model, tokenizer, {}

    def answer(
        self, prompt_id: str, messages: list[dict[str, Any]], max_new_tokens: int, tools: list[dict] | None = None
    ) -> str:
        """The greedy answer to a prompt (its messages, tool turns included, and the tools its pack offers)."""
        if prompt_id not in self.answers:
            import torch

            ids = prompt_token_ids(self.tokenizer, template_messages(messages), **({"tools": tools} if tools else {}))
            with torch.no_grad():
                output = self.model.generate(
                    torch.tensor([ids]),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                )
            self.answers[prompt_id] = self.tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)
        return self.answers[prompt_id]


def verifier_pass_rates(config: DistillConfig, packs: list, answers: GreedyAnswers, held_out: set[str]) -> dict:
    """Per pack with a verifier: share of the student's greedy answers to held-out prompts that pass."""
    rates = {}
    for pack in packs:
        prompts = [p for p in pack.prompts if p.prompt_id in held_out][:MAX_GENERATIONS_PER_PACK]
        if not prompts:
            continue
        limit = answer_limit(config, pack)
        passed = 0
        for prompt in prompts:
            tools = pack.answer_format.tools if pack.answer_format is not None else None
            text = answers.answer(prompt.prompt_id, [m.model_dump() for m in prompt.messages], limit, tools)
            passed += verify_answer(pack.verify, prompt.variables or {}, text)[0]
        rates[pack.name] = round(passed / len(prompts), 6)
    return rates


def sample_rows(held_out_rows: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The first `count` held-out prompts (one teacher answer each), in the split's order."""
    chosen, seen = [], set()
    for row in held_out_rows:
        if len(chosen) == count:
            break
        if row["prompt_id"] not in seen:
            seen.add(row["prompt_id"])
            chosen.append(row)
    return chosen


def sample_answers(config: DistillConfig, rows: list[dict[str, Any]], answers: GreedyAnswers) -> list[str]:
    """One model's greedy answers to the sampled held-out prompts."""
    packs = {pack.name: pack for pack in configured_packs(config)} if rows else {}
    return [
        answers.answer(row["prompt_id"], row["messages"][:-1], answer_limit(config, packs.get(row["pack"])))
        for row in rows
    ]


def run(config: DistillConfig) -> dict[str, Any]:
    """Score the starting weights and the trained student; write eval.json and eval.png."""
    from transformers import AutoTokenizer

    quiet_model_loading()
    config.require_student("eval")  # a clear error before any model loads
    decision = recheck_use(config, "eval")
    layout = config.layout
    trained_dir = layout.student_dir
    summary = read_train_summary(config)
    if summary is None:
        raise StageError(f"no trained student in {trained_dir}: run `synthdistill train` first")
    untrained_dir = prepare_student(config)
    tokenizer = AutoTokenizer.from_pretrained(untrained_dir)
    rows, has_kd = eval_rows(config, tokenizer)
    if not rows:
        raise StageError(
            "the validation (held-out) split is empty: raise datasets.eval_fraction or harvest more prompts (it is split by prompt)"
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    held_out_rows = read_rows(layout, "sft", HELD_OUT_SPLIT, ["prompt_id", "pack", "messages"])
    held_out = {row["prompt_id"] for row in held_out_rows}
    thinking = has_traces(held_out_rows)  # a thinking teacher's traces kept
    samples = sample_rows(held_out_rows, config.require_student("eval").eval_samples)
    result: dict[str, Any] = {"method": summary["method"], "examples": len(rows)}
    packs = verifier_packs(config)
    shaped = [pack for pack in configured_packs(config) if pack.answer_format is not None]  # tools, JSON answers
    generated: dict[str, list[str]] = {}
    judge, no_judge = judge_for(config)  # teacher_nll_on_student_samples
    judged_prompts = held_out_prompts(held_out_rows, config.require_student("eval").on_policy.eval_prompts)
    for label, model_dir in (("untrained", untrained_dir), ("trained", trained_dir)):
        model = load_model(model_dir)  # once: scored, then asked to answer the verifiable and the sampled prompts
        metrics = score_model(model, rows, pad, has_kd)
        answers = GreedyAnswers(model, tokenizer)
        metrics["verifier_pass_rate"] = verifier_pass_rates(config, packs, answers, held_out)
        if shaped:
            limit = lambda pack: answer_limit(config, pack)  # noqa: E731
            metrics.update(answer_format_shares(shaped, answers, held_out, held_out_rows, limit))
        if thinking:
            metrics["verifier_pass_rate_by_mode"] = pass_rates_by_mode(
                packs, model, tokenizer, held_out, config.harvest.max_tokens
            )
        generated[label] = sample_answers(config, samples, answers)
        metrics[METRIC], why = student_sample_nll(config, judge, model, tokenizer, model_dir, judged_prompts)
        no_judge = no_judge or why
        result[label] = metrics
        del model, answers
    del judge
    if no_judge is not None:
        result[f"{METRIC}_note"] = no_judge
    result.update(teacher_comparison(config, rows, has_kd, tokenizer, packs, held_out, result))
    result["untrained_model"] = str(untrained_dir)
    result["trained_model"] = str(trained_dir)
    result["train_steps"] = summary["steps"]
    result["plot"] = layout.relative(layout.eval_plot)
    # held-out prompts with the teacher's answer beside each student's own greedy answer (student.eval_samples)
    result["samples"] = [
        {
            "prompt_id": row["prompt_id"],
            "pack": row["pack"],
            "messages": row["messages"][:-1],
            "teacher": row["messages"][-1]["content"],
            "untrained": generated["untrained"][i],
            "trained": generated["trained"][i],
        }
        for i, row in enumerate(samples)
    ]
    write_text(layout.eval_result, json.dumps(result, indent=2) + "\n", inside=config.run_dir)
    write_plot(layout.eval_plot, summary.get("loss_history", []), result)
    write_model_card(config, summary, decision, result)  # the card's model-index gets these results
    return result


def teacher_weights(config: DistillConfig) -> Path | None:
    """The teacher's weights folder when they are at hand: the in-process teacher, or a local model folder."""
    teacher = config.teacher
    if teacher.backend == "transformers":
        return resolve_model(teacher.model, config.project_dir)
    candidate = Path(teacher.model).expanduser()
    if not candidate.is_absolute():
        candidate = config.project_dir / candidate
    return candidate if (candidate / "config.json").is_file() else None


def nll_gap_closed(untrained: float, trained: float, teacher: float) -> float | None:
    """(untrained − trained) / (untrained − teacher); None where the teacher is no better than the start."""
    gap = untrained - teacher
    return round((untrained - trained) / gap, 6) if gap > 0 else None


def teacher_comparison(config, rows, has_kd, student_tokenizer, packs, held_out, result) -> dict[str, Any]:
    """`teacher` metrics and `nll_gap_closed` where the teacher's weights are at hand; {} otherwise."""
    from transformers import AutoTokenizer

    folder = teacher_weights(config)
    if folder is None:
        return {}
    tokenizer = AutoTokenizer.from_pretrained(folder)
    same_vocabulary = tokenizer.get_vocab() == student_tokenizer.get_vocab()
    if not same_vocabulary:  # the student's token rows mean nothing to this teacher: tokenize for it
        student = config.require_student("eval")
        rows = sft_token_rows(read_rows(config.layout, "sft", HELD_OUT_SPLIT), tokenizer, student.max_length)
        has_kd = False
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = load_model(folder)
    metrics = score_model(model, rows, pad, has_kd)
    metrics["verifier_pass_rate"] = verifier_pass_rates(config, packs, GreedyAnswers(model, tokenizer), held_out)
    del model
    comparison: dict[str, Any] = {"teacher": metrics, "teacher_model": str(folder)}
    if same_vocabulary:
        comparison["nll_gap_closed"] = nll_gap_closed(
            result["untrained"]["nll_per_token"], result["trained"]["nll_per_token"], metrics["nll_per_token"]
        )
    else:
        comparison["nll_gap_closed"] = None
        comparison["nll_gap_closed_note"] = (
            "the teacher's vocabulary differs from the student's: NLL per token is not comparable"
        )
    return comparison


def write_plot(path: Path, loss_history: list[dict[str, float]], result: dict[str, Any]) -> None:
    """Training loss beside the untrained-vs-trained metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [entry.get("step", i + 1) for i, entry in enumerate(loss_history)]
    left.plot(steps, [entry["loss"] for entry in loss_history], label="loss")
    names = list(dict.fromkeys(name for entry in loss_history for name in entry.get("parts", {})))
    for part in names if len(names) > 1 else []:  # one part is the loss itself
        left.plot(steps, [entry["parts"].get(part, float("nan")) for entry in loss_history], label=part, alpha=0.7)
    left.set(title=f"training ({result['method']})", xlabel="step", ylabel="loss")
    left.legend()
    names = [m for m in ("nll_per_token", "top1_agreement", "kd_kl") if result["trained"].get(m) is not None]
    series = [label for label in ("untrained", "trained", "teacher") if label in result]
    width = 0.8 / len(series)
    for index, label in enumerate(series):
        offset = (index - (len(series) - 1) / 2) * width
        values = [result[label].get(m) or 0.0 for m in names]
        right.bar([i + offset for i in range(len(names))], values, width, label=label)
    right.set_xticks(range(len(names)), names)
    right.set(title=f"held-out teacher answers ({result['examples']} examples)")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
