"""Train the student with TRL: `SFTTrainer` for sft, a subclass with the sparse KD loss for kd.

Training reads the built datasets alone (never a teacher). Checkable obligations of the
teacher's terms (a student name prefix) are enforced before a single step runs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from synthdistill.config import DistillConfig
from synthdistill.dataset_cards import write_on_policy_card
from synthdistill.errors import ConfigError, StageError
from synthdistill.model_store import quiet_model_loading
from synthdistill.policy import enforce_obligations, recheck_use
from synthdistill.run_layout import TRAIN_SPLIT
from synthdistill.safe_write import write_text
from synthdistill.train.chat_template import training_chat_template
from synthdistill.train.data import PaddingCollator, kd_token_rows, read_rows, sft_token_rows
from synthdistill.train.local_teacher import attach_local_teacher, restore_projections, save_projections
from synthdistill.train.model_card import write_model_card
from synthdistill.train.on_policy import train_on_policy
from synthdistill.train.student_init import prepare_student
from synthdistill.train.teacher_tokens import BATCH_KEYS, teacher_token_rows
from synthdistill.train.trainer_args import training_args


class TrainSummary(BaseModel):
    """What `train` did; saved as student/train.json beside the weights."""

    method: str
    steps: int
    epochs: float
    examples: int
    train_loss_first: float | None
    train_loss_last: float | None
    seconds: float
    start_model: str
    output_dir: str
    resumed_from: str | None = None
    lora: bool = False
    device: str
    # kd only: "hidden" (the loss from the last hidden state, no full logits) or "logits" (the model's own head)
    kd_loss_path: str | None = None
    # the loss's parts by name (kd: ce and kl; sft: ce), each {"first": …, "last": …}
    loss_parts: dict[str, dict[str, float]] = {}
    # kd: each part's weight in the loss (ce, kl, feature, relation); the logged parts are unweighted
    loss_weights: dict[str, float] = {}
    # kd with feature/relation parts: the local teacher and the time and memory of its extra forward
    local_teacher: dict[str, Any] | None = None
    # one entry per logged step: step, epoch, loss, learning_rate, grad_norm and `parts` {name: value}
    # the saved tokenizer's chat template: generation markers added for TRL's assistant_only_loss, or why not
    chat_template: str | None = None
    # on-policy: the share of the student's sampled answer tokens that got teacher targets
    teacher_target_share: float | None = None
    # on-policy: rounds, samples, teacher tokens scored, batches by kind, scoring endpoints, the decision
    on_policy: dict[str, Any] | None = None
    loss_history: list[dict[str, Any]]


def student_name(config: DistillConfig) -> str:
    """The trained student's name (student.name, else the run name)."""
    return config.require_student("train").name or config.name


def load_training_rows(config: DistillConfig, method: str, tokenizer) -> list[dict[str, Any]]:
    """Token rows of the train split for `method` (kd needs the KD dataset, sft the SFT one)."""
    student = config.require_student("train")
    layout = config.layout
    if method == "kd":
        if not layout.dataset_dir("kd").exists():
            raise StageError(
                f"{layout.dataset_dir('kd')} does not exist: the KD dataset needs logprobs (harvest.top_logprobs > 0) "
                "and a student; run `synthdistill build`, or train with --method sft"
            )
        relations = student.kd.relations
        if relations is None or relations.source != "embeddings":
            return kd_token_rows(read_rows(layout, "kd", TRAIN_SPLIT))
        rows = read_rows(layout, "kd", TRAIN_SPLIT)
        if not any(row.get("teacher_embedding") for row in rows):
            raise config.key_error(
                f"student.kd.relations.source is embeddings, but the KD dataset {layout.dataset_dir('kd')} has no "
                "teacher embeddings: set harvest.embeddings, then run `synthdistill harvest` (it asks only for the "
                "missing vectors) and `synthdistill build`",
                "student",
                "kd",
                "relations",
                "source",
            )
        return kd_token_rows(rows, extra=("teacher_embedding",))
    return sft_token_rows(read_rows(layout, "sft", TRAIN_SPLIT), tokenizer, student.max_length)


def _kd_trainer_class():
    from trl import SFTTrainer

    from synthdistill.train.kd_loss import kd_loss

    class KDTrainer(SFTTrainer):
        """SFTTrainer whose loss is `alpha*CE + (1-alpha)*T^2*KL` over the stored teacher top-k (+ tail)."""

        kd_settings = None
        kd_head = False
        local_teacher = None  # the frozen teacher of the feature/relation parts (never wrapped, never saved)
        loss_part_names = ("ce", "kl")

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            kd = {key: inputs.pop(key) for key in ("kd_ids", "kd_logprobs", "kd_mask")}
            # a teacher with another tokenizer: its own ids of the batch, and the segments both sides cover
            alignment = {key: inputs.pop(key) for key in BATCH_KEYS if key in inputs}
            embedded = {
                key: inputs.pop(key) for key in ("teacher_embedding", "teacher_embedding_mask") if key in inputs
            }
            labels = inputs.pop("labels")
            model_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
            settings = self.kd_settings
            if self.kd_head:  # the loss comes out of the forward; no [batch, seq, vocab] logits
                teacher = self.local_teacher
                online = settings.temperature if settings.online else None
                if teacher is None:
                    taught = None
                elif alignment:
                    ids, mask = alignment["teacher_input_ids"], alignment["teacher_attention_mask"]
                    taught = {**teacher.run(ids, mask, labels=None), "alignment": alignment}
                else:
                    taught = teacher.run(**model_inputs, labels=labels, online_temperature=online)
                if embedded:  # relations from the harvested embeddings: the teacher side without a local teacher
                    vectors, present = embedded["teacher_embedding"], embedded["teacher_embedding_mask"]
                    taught = {**(taught or {}), "embeddings": vectors, "embedding_mask": present}
                outputs = model(**model_inputs, kd_targets={"labels": labels, **kd}, kd_teacher=taught)
                loss, parts = outputs.loss, {name: outputs[name] for name in self.loss_part_names}
            else:
                outputs = model(**model_inputs, use_cache=False)
                logit = {"alpha": settings.alpha, "temperature": settings.temperature, "tail": settings.tail}
                loss, parts = kd_loss(outputs.logits, labels, **kd, **logit, weights=settings.loss_weights())
            self._kd_parts.append({name: float(parts[name]) for name in self.loss_part_names})
            return (loss, outputs) if return_outputs else loss

        def log(self, logs: dict[str, float], *args, **kwargs) -> None:
            parts = getattr(self, "_kd_parts", [])
            if "loss" in logs and parts:  # each part's mean over the steps since the last log, beside the loss
                for name in self.loss_part_names:
                    logs[name] = sum(p[name] for p in parts) / len(parts)
                parts.clear()
            super().log(logs, *args, **kwargs)

    return KDTrainer


def _progress_callback(progress: Callable[[dict], None] | None):
    from transformers import TrainerCallback

    class _Forward(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if progress is not None:
                progress({"step": state.global_step, "max_steps": state.max_steps})

        def on_log(self, args, state, control, logs=None, **kwargs):
            if progress is not None and logs and "loss" in logs:
                progress({"step": state.global_step, "max_steps": state.max_steps, "loss": logs["loss"]})

    return _Forward()


def _peft_config(config: DistillConfig):
    lora = config.require_student("train").lora
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def _resume_point(checkpoints: Path, resume: bool, state) -> str | None:
    if not resume:
        if state.is_main_process:
            shutil.rmtree(checkpoints, ignore_errors=True)  # a fresh run must not pick up stale optimizer state
        state.wait_for_everyone()
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last is None:
        raise StageError(
            f"train --resume: no checkpoint in {checkpoints}; set student.checkpoint_every and train without --resume first"
        )
    return last


def run(
    config: DistillConfig,
    method: str | None = None,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
) -> TrainSummary:
    """Fine-tune the student on the built datasets; saves weights, tokenizer, model card and train.json."""
    student = config.require_student("train")
    method = method or student.method
    # before any heavy import: a refusal is instant
    decision = recheck_use(config, "train")
    enforce_obligations(decision, student_name(config))
    if method == "on-policy":
        return _run_on_policy(config, decision, resume, progress)

    import torch
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    quiet_model_loading()
    use_gpu = torch.cuda.is_available()
    # student.trainer is checked against the installed TRL before anything slow (exit 2 on a bad field)
    args = training_args(config, config.layout.checkpoints_dir, use_gpu, run_name=student_name(config))
    use_gpu = use_gpu and not args.use_cpu
    # Under torchrun/accelerate launch every process runs this: one builds the pruned init, the rest wait.
    state = PartialState(cpu=not use_gpu)
    with state.main_process_first():
        start = prepare_student(config)
    tokenizer = AutoTokenizer.from_pretrained(start)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = load_training_rows(config, method, tokenizer)
    if not rows:
        raise StageError(f"the {method} train split is empty: nothing to train on (see {config.layout.filtered_dir})")

    out = config.layout.student_dir
    checkpoints = config.layout.checkpoints_dir
    resume_from = _resume_point(checkpoints, resume, state)
    collator, cross_tokenizer = PaddingCollator(tokenizer.pad_token_id), None
    if method == "kd":  # a local teacher with another tokenizer reads its own tokens of each row
        rows, collator, cross_tokenizer = teacher_token_rows(config, rows, tokenizer, collator)
    model = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32)
    trainer_class = _kd_trainer_class() if method == "kd" else SFTTrainer
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        data_collator=collator,
        processing_class=tokenizer,
        peft_config=_peft_config(config),
        callbacks=[_progress_callback(progress)],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts to stdout; progress goes through `progress`
    if method == "kd":
        trainer.kd_settings = student.kd
        trainer._kd_parts = []
        trainer.loss_part_names = tuple(student.kd.loss_weights())
        projections = _attach_local_teacher(trainer, config, use_gpu, cross_tokenizer)
        trainer.kd_head = _add_kd_head(trainer.model, student.kd, projections)
        if projections is not None:  # saved in each checkpoint, restored on resume (LoRA checkpoints lack them)
            trainer.add_callback(_projection_checkpoints(projections))
            if resume_from is not None:
                restore_projections(projections, Path(resume_from))
    started = time.perf_counter()
    # stdout is the CLI's (--json): what the report_to integrations print (trackio's banner) goes to stderr
    with contextlib.redirect_stdout(sys.stderr):
        trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started

    _drop_feature_projections(trainer.model)
    template_note = _add_generation_markers(tokenizer)
    _save_student(trainer, tokenizer, out, merge=bool(student.lora and student.lora.merge_on_save))
    history = loss_history(trainer.state.log_history, getattr(trainer, "loss_part_names", None))
    losses = [entry["loss"] for entry in history]
    summary = TrainSummary(
        method=method,
        steps=trainer.state.global_step,
        epochs=float(trainer.state.epoch or 0.0),
        examples=len(rows),
        train_loss_first=losses[0] if losses else None,
        train_loss_last=losses[-1] if losses else None,
        seconds=round(seconds, 2),
        start_model=str(start),
        output_dir=str(out),
        resumed_from=resume_from,
        lora=student.lora is not None,
        device="cuda" if use_gpu else "cpu",
        kd_loss_path=("hidden" if trainer.kd_head else "logits") if method == "kd" else None,
        loss_parts=first_and_last_parts(history),
        loss_weights=student.kd.loss_weights() if method == "kd" else {},
        local_teacher=trainer.local_teacher.summary() if getattr(trainer, "local_teacher", None) else None,
        chat_template=template_note,
        loss_history=history,
    )
    if trainer.is_world_process_zero():  # under `accelerate launch` every process gets here; one writes
        _write_summary(config, summary, decision)
    return summary


def _write_summary(config: DistillConfig, summary: TrainSummary, decision) -> None:
    write_text(config.layout.train_summary, summary.model_dump_json(indent=2) + "\n", inside=config.run_dir)
    write_model_card(config, summary.model_dump(), decision)


def _run_on_policy(config: DistillConfig, decision, resume: bool, progress) -> TrainSummary:
    """method on-policy (train/on_policy.py): rounds of sample → score → train; saves the student like the others."""
    import torch

    quiet_model_loading()
    start = prepare_student(config)
    model, tokenizer, fields = train_on_policy(config, str(start), decision, resume, progress)
    template_note = _add_generation_markers(tokenizer)
    out = config.layout.student_dir
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    history = fields["loss_history"]
    losses = [entry["loss"] for entry in history]
    summary = TrainSummary(
        method="on-policy",
        epochs=0.0,
        examples=fields["on_policy"]["samples_trained"],
        train_loss_first=losses[0] if losses else None,
        train_loss_last=losses[-1] if losses else None,
        start_model=str(start),
        output_dir=str(out),
        device="cuda" if torch.cuda.is_available() else "cpu",
        kd_loss_path="logits",
        loss_parts=first_and_last_parts(history),
        loss_weights=fields.pop("loss_weights"),
        chat_template=template_note,
        **fields,
    )
    _write_summary(config, summary, decision)
    write_on_policy_card(config, summary.model_dump(), decision)
    return summary


HISTORY_KEYS = ("step", "epoch", "loss", "learning_rate", "grad_norm")


def loss_history(log_history: list[dict[str, Any]], part_names: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """The trainer's logged steps as {step, epoch, loss, learning_rate, grad_norm, parts: {name: value}}.

    `part_names` are the logged parts of a method's loss (kd: ce, kl); None means the loss is one
    part, the cross-entropy (sft).
    """
    history = []
    for entry in log_history:
        if "loss" not in entry:
            continue
        row: dict[str, Any] = {
            key: float(entry[key]) for key in HISTORY_KEYS if isinstance(entry.get(key), int | float)
        }
        if part_names is None:
            row["parts"] = {"ce": float(entry["loss"])}
        else:
            row["parts"] = {name: float(entry[name]) for name in part_names if name in entry}
        history.append(row)
    return history


def first_and_last_parts(history: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each loss part's first and last logged value: {name: {"first": …, "last": …}}."""
    parts: dict[str, dict[str, float]] = {}
    for entry in history:
        for name, value in entry.get("parts", {}).items():
            parts.setdefault(name, {"first": value})["last"] = value
    return parts


def _inner_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # under PEFT, the wrapped model


def _add_kd_head(model, settings, projections=None) -> bool:
    """Put the KD loss into the student's forward (as TRL does for CE); False where the logits need the model's head."""
    from synthdistill.train.kd_head import add_kd_head, supports_kd_head

    inner = _inner_model(model)
    if not supports_kd_head(inner):
        return False
    add_kd_head(inner, settings, projections)
    return True


def _attach_local_teacher(trainer, config: DistillConfig, use_gpu: bool, cross_tokenizer=None):
    """For feature/relation/online parts: load the local teacher onto `trainer.local_teacher`; returns the projections."""
    from synthdistill.train.kd_head import supports_kd_head

    settings = config.require_student("train").kd
    inner = _inner_model(trainer.model)
    wants_teacher = settings.features is not None or settings.relations is not None or settings.online
    if wants_teacher and not supports_kd_head(inner):
        raise ConfigError(
            "student.kd.features / relations / online need a student whose logits are its LM head's output; "
            f"{type(inner).__name__} transforms them (softcapping or scaling), which is not supported yet"
        )
    trainer.local_teacher, projections = attach_local_teacher(
        config, inner, trainer.args.device, use_gpu, cross_tokenizer
    )
    return projections


def _projection_checkpoints(projections):
    """A callback that writes feature KD's projections into each checkpoint the trainer saves."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class _SaveProjections(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                save_projections(projections, Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")

    return _SaveProjections()


def _drop_feature_projections(model) -> None:
    """Feature KD's projections train with the student but are no part of the saved model."""
    inner = _inner_model(model)
    if hasattr(inner, "kd_feature_projections"):
        del inner.kd_feature_projections


def _add_generation_markers(tokenizer) -> str:
    """Give the tokenizer a chat template with generation markers (train/chat_template.py); say what was done."""
    template, note = training_chat_template(tokenizer)
    if template is not None:
        tokenizer.chat_template = template
    return note


def _save_student(trainer, tokenizer, out: Path, merge: bool) -> None:
    model = trainer.model
    if merge and hasattr(model, "merge_and_unload"):
        if trainer.is_world_process_zero():
            model.merge_and_unload().save_pretrained(out)
            tokenizer.save_pretrained(out)
        return
    # Trainer.save_model gathers FSDP/DeepSpeed shards (every process must call it) and writes on the main one.
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out)


def read_train_summary(config: DistillConfig) -> dict[str, Any] | None:
    """student/train.json, or None before training."""
    path = config.layout.train_summary
    return json.loads(path.read_text()) if path.exists() else None
