"""The `SFTConfig` of a train run: synthdistill's own settings, then `student.trainer` passed through.

`student.trainer` takes any field of the installed TRL's `SFTConfig` (which extends transformers'
`TrainingArguments`): warm-up, scheduler, weight decay, gradient clipping, bf16, `report_to`, … It
is checked when `train` starts, against the dataclass fields of the TRL that is installed: an
unknown field is exit 2 naming distill.yaml's line and the nearest valid name, and a field that
synthdistill sets from one of its own keys is refused with that key's name, so one setting never
has two homes. `report_to` defaults to "none"; `tensorboard` writes event files under
`student/checkpoints/runs/`, `trackio` logs locally (project = the run's name; no Space unless
`trackio_space_id` is set).
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from synthdistill.config import DistillConfig
from synthdistill.errors import ConfigError

_DATA = "synthdistill tokenizes the datasets itself (the prompt masked, the answer and KD targets learned)"
# SFTConfig fields synthdistill sets: where the user sets each instead.
OWNED: dict[str, str] = {
    "output_dir": "the run folder's layout (RunLayout.checkpoints_dir)",
    "per_device_train_batch_size": "student.batch_size",
    "gradient_accumulation_steps": "student.gradient_accumulation",
    "learning_rate": "student.learning_rate",
    "num_train_epochs": "student.epochs",
    "max_steps": "student.max_steps",
    "save_strategy": "student.checkpoint_every",
    "save_steps": "student.checkpoint_every",
    "seed": "student.seed",
    "data_seed": "student.seed",
    "max_length": "student.max_length",
    "resume_from_checkpoint": "`synthdistill train --resume`",
    "dataset_kwargs": _DATA,
    "remove_unused_columns": _DATA,
    "dataset_text_field": _DATA,
    "packing": _DATA,
    "padding_free": _DATA,
    "assistant_only_loss": _DATA,
    "completion_only_loss": _DATA,
}


def _error(config: DistillConfig, message: str, key: str | None = None) -> ConfigError:
    """At the key's line in distill.yaml, or naming the `--set` override that set it."""
    return config.key_error(message, "student", "trainer", *([key] if key else []))


def trainer_fields() -> set[str]:
    """The fields the installed TRL's SFTConfig takes."""
    from trl import SFTConfig

    return {f.name for f in dataclasses.fields(SFTConfig) if f.init}


def check_trainer_settings(config: DistillConfig) -> dict[str, Any]:
    """`student.trainer`, checked against the installed TRL (ConfigError, exit 2, on a bad field)."""
    settings = dict(config.require_student("train").trainer)
    if not settings:
        return settings
    valid = trainer_fields()
    for key in settings:
        if key in OWNED:
            raise _error(config, f"'student.trainer.{key}' is set by synthdistill: use {OWNED[key]}", key)
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid - OWNED.keys()), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise _error(
                config,
                f"unknown key 'student.trainer.{key}': not a field of TRL's SFTConfig / TrainingArguments "
                f"(trl {_trl_version()}){hint}",
                key,
            )
    _check_integrations(config, settings.get("report_to"))
    return settings


def _check_integrations(config: DistillConfig, report_to: Any) -> None:
    """Every integration in report_to must be installed (transformers only says so once training starts)."""
    from transformers.integrations import get_available_reporting_integrations

    wanted = [report_to] if isinstance(report_to, str) else list(report_to or [])
    available = set(get_available_reporting_integrations())
    for name in wanted:
        if name not in ("none", "all") and name not in available:
            raise _error(
                config,
                f"'student.trainer.report_to': {name} is not installed (pip install {name}), or is not an "
                "integration transformers knows",
                "report_to",
            )


def _trl_version() -> str:
    import trl

    return trl.__version__


def _reports_to(settings: dict[str, Any], name: str) -> bool:
    report_to = settings.get("report_to")
    return name in ([report_to] if isinstance(report_to, str) else list(report_to or []))


def training_args(config: DistillConfig, checkpoints: Path, use_gpu: bool, run_name: str | None = None):
    """SFTConfig: synthdistill's settings, then `student.trainer` (checked) on top."""
    import torch
    from trl import SFTConfig

    student = config.require_student("train")
    settings = check_trainer_settings(config)
    values: dict[str, Any] = {
        "output_dir": str(checkpoints),
        "use_cpu": not use_gpu,
        "bf16": use_gpu and torch.cuda.is_bf16_supported(),
        "report_to": "none",
        "per_device_train_batch_size": student.batch_size,
        "gradient_accumulation_steps": student.gradient_accumulation,
        "learning_rate": student.learning_rate,
        "num_train_epochs": student.epochs,
        "max_steps": student.max_steps or -1,
        "logging_steps": 1,
        "save_strategy": "steps" if student.checkpoint_every else "no",
        "save_steps": student.checkpoint_every or 500,
        "seed": student.seed,
        "data_seed": student.seed,
        # Small students on CPU: recomputing activations costs more than the memory it saves.
        "activation_checkpointing": use_gpu,
        "max_length": student.max_length,
        "dataset_kwargs": {"skip_prepare_dataset": True},
        "remove_unused_columns": False,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        # Every parameter that trains gets a gradient each step; the unused-parameter scan is wasted work.
        "ddp_find_unused_parameters": False,
    }
    if _reports_to(settings, "trackio"):  # a local trackio project named after the run, unless the user names one
        values.update(project=config.name, run_name=run_name)
    if "fp16" in settings or "bf16" in settings:  # the user chose the precision: ours steps aside
        values["bf16"] = False
    try:
        return SFTConfig(**{**values, **settings})
    except (TypeError, ValueError) as error:
        culprit = _refused_field(SFTConfig, values, settings)
        key = f"student.trainer.{culprit}" if culprit else "student.trainer"
        raise _error(config, f"'{key}': TRL's SFTConfig refused it: {error}", culprit) from None


def _refused_field(config_class, values: dict[str, Any], settings: dict[str, Any]) -> str | None:
    """The first `student.trainer` field that SFTConfig refuses on its own (None: only their combination)."""
    for key, value in settings.items():
        try:
            config_class(**{**values, key: value})
        except (TypeError, ValueError):
            return key
    return None
