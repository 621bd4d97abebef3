"""On-policy distillation (GKD): the student samples, the teacher scores its samples, the student learns.

Each round r of `student.on_policy.rounds`:

1. the student (its own `generate`) samples `samples_per_prompt` answers for the round's slice of
   `prompts_per_round` training prompts (the SFT train split, in order, wrapping around);
2. the teacher scores every sample (`synthdistill.student_samples.score_samples`: the scoring
   scheduler, gate and ledger); the scores are mapped onto the student's tokens (on_policy_rows);
3. the student takes `steps_per_round` optimizer steps: a share `lambda` of them on batches of its
   scored samples (loss: generalised JSD with `beta` over the teacher's top-k + tail bucket,
   kd_loss's `divergence_rows`), the rest on offline KD batches of the KD dataset (kd_loss with
   `student.kd`). Which steps are which is a seeded shuffle, so the share is exact per round;
4. the round's checkpoint (weights, optimizer, state.json last) is saved.

Crash safety: `train --resume` loads the last finished round and goes on with the next. The
samples of a round are a pure function of (weights, seed, round, prompt), and the checkpoint id
the ledger keys them by is a digest of what determines the weights (`checkpoint_id`), so a round
interrupted at any point regenerates the same samples and the ledger answers them without a
request; no finished step is lost.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from typing import Any

from synthdistill.config import DistillConfig
from synthdistill.errors import StageError
from synthdistill.records import content_hash
from synthdistill.run_layout import TRAIN_SPLIT
from synthdistill.safe_write import write_text
from synthdistill.student_samples import PromptToAnswer, sample_answers, score_samples
from synthdistill.train.data import PaddingCollator, kd_token_rows, read_rows
from synthdistill.train.on_policy_rows import TargetCounts, scored_rows

ON_POLICY, OFFLINE = "on-policy", "offline"
MAX_GRAD_NORM = 1.0


def check_settings(config: DistillConfig) -> None:
    """Refuse what on-policy training does not support, before anything loads."""
    student = config.require_student("train")
    if student.lora is not None:
        raise config.key_error("student.lora is not supported with method on-policy yet: drop it", "student", "lora")
    kd = student.kd
    if kd.features is not None or kd.relations is not None or kd.online:
        raise config.key_error(
            "student.kd.features / relations / online are not supported with method on-policy: its offline batches "
            "use the stored top-k only",
            "student",
            "kd",
        )


def train_prompts(config: DistillConfig) -> list[PromptToAnswer]:
    """The distinct prompts of the SFT train split, in the split's order."""
    rows = read_rows(config.layout, "sft", TRAIN_SPLIT, ["prompt_id", "messages"])
    seen: dict[str, PromptToAnswer] = {}
    for row in rows:
        if row["prompt_id"] not in seen:
            seen[row["prompt_id"]] = PromptToAnswer(row["prompt_id"], row["messages"][:-1])
    return list(seen.values())


def offline_rows(config: DistillConfig) -> list[dict[str, Any]]:
    """The KD dataset's train rows for the offline batches (needed when lambda < 1)."""
    layout = config.layout
    if not layout.dataset_dir("kd").exists():
        raise StageError(
            f"student.on_policy.lambda < 1 mixes in offline KD batches, and {layout.dataset_dir('kd')} does not "
            "exist: run `synthdistill build` with harvest.top_logprobs > 0, or set student.on_policy.lambda: 1"
        )
    return kd_token_rows(read_rows(layout, "kd", TRAIN_SPLIT))


def checkpoint_id(config: DistillConfig, start_model: str, prompts: list[PromptToAnswer], round_index: int) -> str:
    """The ledger's name for the weights that sample round `round_index`: what determines them, and the round.

    The same config and data give the same id (a resumed or repeated run reuses its scores); a
    change to anything that moves the weights (learning rate, data, seed...) gives new ids.
    """
    student = config.require_student("train")
    moving = student.model_dump(mode="json", exclude={"name", "eval_samples", "trainer", "checkpoint_every"})
    moving["on_policy"].pop("rounds", None)  # more rounds later: the earlier rounds keep their ids
    moving["on_policy"].pop("eval_prompts", None)
    digest = content_hash([moving, start_model, [p.prompt_id for p in prompts]], 12)
    return f"{student.name or config.name}@{digest}/seed-{student.seed}/round-{round_index}"


def round_prompts(prompts: list[PromptToAnswer], round_index: int, per_round: int) -> list[PromptToAnswer]:
    """Round r's slice of the prompts: the next `per_round` after round r − 1's, wrapping around."""
    count = min(per_round, len(prompts))
    start = (round_index * per_round) % len(prompts)
    return [prompts[(start + i) % len(prompts)] for i in range(count)]


def step_kinds(share: float, steps: int, seed: int, round_index: int) -> list[str]:
    """Which of a round's steps are on-policy: round(share · steps) of them, at seeded positions."""
    on = round(share * steps)
    kinds = [ON_POLICY] * on + [OFFLINE] * (steps - on)
    random.Random(f"{seed}/{round_index}/kinds").shuffle(kinds)
    return kinds


def _batches(rows: list[dict[str, Any]], size: int, seed: str, start: int, count: int) -> list[list[dict[str, Any]]]:
    """Batches number start .. start+count−1 of `rows` walked in epochs, each epoch a seeded shuffle."""
    out = []
    for index in range(start, start + count):
        first = index * size
        batch = []
        for position in range(first, first + min(size, len(rows))):
            epoch, at = divmod(position, len(rows))
            order = list(range(len(rows)))
            random.Random(f"{seed}/{epoch}").shuffle(order)
            batch.append(rows[order[at]])
        out.append(batch)
    return out


class RoundState:
    """What survives a round: finished rounds and steps, counts, history; saved as a checkpoint's state.json."""

    def __init__(self, data: dict[str, Any] | None = None):
        data = data or {}
        self.rounds_done: int = data.get("rounds_done", 0)
        self.step: int = data.get("step", 0)
        self.batches: dict[str, int] = data.get("batches", {ON_POLICY: 0, OFFLINE: 0})
        self.samples: int = data.get("samples", 0)
        self.requests_sent: int = data.get("requests_sent", 0)  # scoring requests (the ledger answers the rest)
        self.samples_trained: int = data.get("samples_trained", 0)
        self.teacher_tokens: int = data.get("teacher_tokens", 0)
        self.prompt_tokens: int = data.get("prompt_tokens", 0)
        self.targets = TargetCounts(**data.get("targets", {}))
        self.endpoints: list[str] = data.get("endpoints", [])
        self.history: list[dict[str, Any]] = data.get("history", [])
        self.checkpoints: list[str] = data.get("checkpoints", [])
        self.seconds: float = data.get("seconds", 0.0)

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["targets"] = {k: v for k, v in self.targets.__dict__.items()}
        return data


def _loss(model, batch, kind: str, config: DistillConfig):
    """(loss, parts) of one batch: the generalised JSD on on-policy batches, the KD loss on offline ones."""
    from synthdistill.train.kd_loss import kd_loss

    student = config.require_student("train")
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    targets = {key: batch[key] for key in ("labels", "kd_ids", "kd_logprobs", "kd_mask")}
    if kind == ON_POLICY:
        settings = student.on_policy
        loss, parts = kd_loss(
            logits, **targets, tail=student.kd.tail, weights={"ce": 0.0, "kl": 1.0}, beta=settings.beta
        )
        return loss, {"jsd": float(parts["kl"])}
    kd = student.kd
    loss, parts = kd_loss(logits, **targets, alpha=kd.alpha, temperature=kd.temperature, tail=kd.tail,
                          weights=kd.loss_weights())  # fmt: skip
    return loss, {"ce": float(parts["ce"]), "kl": float(parts["kl"])}


def _save_round(layout, model, optimizer, state: RoundState, round_index: int) -> None:
    """The round's checkpoint, written beside and renamed into place; older rounds' checkpoints removed."""
    import torch

    final = layout.on_policy_round_dir(round_index)
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    write_text(layout.on_policy_round_state(partial), json.dumps(state.as_dict()) + "\n", inside=layout.run_dir)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for older in layout.on_policy_round_dirs():
        if older != final:
            shutil.rmtree(older, ignore_errors=True)


def _resume(layout, start: str):
    """(weights folder, optimizer state path or None, state) to continue from."""
    finished = layout.on_policy_round_dirs()
    if not finished:
        raise StageError(
            f"train --resume: no finished on-policy round in {layout.checkpoints_dir}; train without --resume first"
        )
    last = finished[-1]
    state = RoundState(json.loads(layout.on_policy_round_state(last).read_text()))
    return last, last / "optimizer.pt", state


def _append_samples(layout, records: list[dict[str, Any]], round_index: int, fresh: bool) -> None:
    """student/on-policy-samples.jsonl: the scored samples of each round (a round run again replaces its lines)."""
    path = layout.on_policy_samples
    kept = []
    if path.exists() and not fresh:
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["round"] < round_index]
    lines = kept + [json.dumps({"round": round_index, **record}) for record in records]
    write_text(path, "\n".join(lines) + "\n", inside=layout.run_dir)


def train_on_policy(
    config: DistillConfig,
    start: str,
    decision=None,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Run the rounds; returns (model, tokenizer, the summary's fields). The caller saves the student."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_settings(config)
    student = config.require_student("train")
    settings = student.on_policy
    layout = config.layout
    tokenizer = AutoTokenizer.from_pretrained(start)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    prompts = train_prompts(config)
    if not prompts:
        raise StageError(
            f"the sft train split has no prompts: nothing for the student to answer (see {layout.filtered_dir})"
        )
    offline = offline_rows(config) if settings.lambda_ < 1.0 else []
    device = "cuda" if torch.cuda.is_available() else "cpu"
    weights, optimizer_state, state = (start, None, RoundState())
    if resume:
        weights, optimizer_state, state = _resume(layout, start)
    else:
        shutil.rmtree(layout.checkpoints_dir, ignore_errors=True)
    torch.manual_seed(student.seed)
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32).to(device)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=student.learning_rate)
    if optimizer_state is not None:
        optimizer.load_state_dict(torch.load(optimizer_state, map_location=device))
    collate = PaddingCollator(tokenizer.pad_token_id)
    total_steps = settings.rounds * settings.steps_per_round
    resumed_from = str(weights) if resume else None
    for round_index in range(state.rounds_done, settings.rounds):
        started = time.perf_counter()
        name = checkpoint_id(config, start, prompts, round_index)
        samples = sample_answers(
            model,
            tokenizer,
            round_prompts(prompts, round_index, settings.prompts_per_round),
            checkpoint=name,
            samples_per_prompt=settings.samples_per_prompt,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            seed=student.seed,
            round_index=round_index,
        )
        scores, scoring = score_samples(config, samples)
        rows, records = scored_rows(samples, scores, tokenizer, student.max_length, state.targets)
        _append_samples(layout, records, round_index, fresh=round_index == 0)
        state.samples += len(samples)
        state.requests_sent += scoring.requests_sent
        state.samples_trained += len(rows)
        state.teacher_tokens += sum(len(score.logprobs.tokens) for score in scores)
        state.prompt_tokens += sum(getattr(score, "prompt_tokens_scored", 0) or 0 for score in scores)
        state.endpoints = sorted({*state.endpoints, *(str(s.endpoint) for s in scores if getattr(s, "endpoint", None))})
        kinds = step_kinds(settings.lambda_, settings.steps_per_round, student.seed, round_index)
        if not offline:
            kinds = [ON_POLICY] * len(kinds)
        on_batches = iter(
            _batches(rows, student.batch_size, f"{student.seed}/{round_index}", 0, kinds.count(ON_POLICY))
        )
        off_batches = iter(_batches(offline, student.batch_size, f"{student.seed}/offline", state.batches[OFFLINE],
                                    kinds.count(OFFLINE)) if offline else [])  # fmt: skip
        model.train()
        for kind in kinds:
            batch_rows = next(on_batches if kind == ON_POLICY else off_batches, None)
            if not batch_rows:  # a round whose samples all lack targets: its on-policy steps are skipped
                continue
            batch = {key: value.to(device) for key, value in collate(batch_rows).items()}
            loss, parts = _loss(model, batch, kind, config)
            optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            state.step += 1
            state.batches[kind] += 1
            entry = {"step": float(state.step), "round": round_index, "batch": kind, "loss": float(loss.detach()),
                     "learning_rate": student.learning_rate, "grad_norm": float(grad_norm), "parts": parts}  # fmt: skip
            state.history.append(entry)
            if progress is not None:
                progress({"step": state.step, "max_steps": total_steps, "loss": entry["loss"], "round": round_index})
        state.rounds_done = round_index + 1
        state.checkpoints.append(name)
        state.seconds += time.perf_counter() - started
        _save_round(layout, model, optimizer, state, round_index)
    return model, tokenizer, summary_fields(config, state, resumed_from, decision)


def summary_fields(config: DistillConfig, state: RoundState, resumed_from: str | None, decision) -> dict[str, Any]:
    """What train.json records of an on-policy run (beside the fields every method has).

    `decision` is the gate's decision the run trains under (the scoring requests are gated too).
    """
    student = config.require_student("train")
    settings = student.on_policy
    offline_weights = student.kd.loss_weights() if state.batches[OFFLINE] else {}
    return {
        "steps": state.step,
        "loss_weights": {"jsd": 1.0, **offline_weights},
        "seconds": round(state.seconds, 2),
        "resumed_from": resumed_from,
        "loss_history": state.history,
        "teacher_target_share": state.targets.share,
        "on_policy": {
            "rounds": state.rounds_done,
            "steps_per_round": settings.steps_per_round,
            "prompts_per_round": settings.prompts_per_round,
            "samples_per_prompt": settings.samples_per_prompt,
            "lambda": settings.lambda_,
            "beta": settings.beta,
            "temperature": settings.temperature,
            "max_new_tokens": settings.max_new_tokens,
            "scoring_top_k": settings.scoring_top_k,
            "samples_scored": state.samples,
            "scoring_requests_sent": state.requests_sent,
            "samples_trained": state.samples_trained,
            "teacher_tokens_scored": state.teacher_tokens,
            "prompt_tokens_scored": state.prompt_tokens,
            "batches": dict(state.batches),
            "teacher_targets": state.targets.as_dict(),
            "scoring_endpoints": state.endpoints,
            "teacher": config.teacher.model,
            "policy_id": decision.policy_id if decision is not None else None,
            "decision": str(decision.outcome) if decision is not None else None,
            "checkpoints": state.checkpoints,
        },
    }
