"""`student.trainer`: any SFTConfig / TrainingArguments field passed through, checked against the installed TRL."""

from __future__ import annotations

import sys

import pytest
import yaml

from synthdistill import build, train
from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.errors import ConfigError
from synthdistill.train.trainer_args import training_args
from tests.training_fixtures import write_kept_project


def _with_trainer(path, trainer: dict) -> int:
    """Put `student.trainer` into distill.yaml; returns the line of its first key."""
    data = yaml.safe_load(path.read_text())
    data["student"]["trainer"] = trainer
    text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    lines = text.splitlines()
    at = lines.index("  trainer:")  # the keys under it follow
    first = next(iter(trainer))
    return next(i for i, line in enumerate(lines[at:], at + 1) if line.strip().startswith(f"{first}:"))


def test_trainer_fields_pass_through_to_sftconfig(tmp_path, tiny_student, tokenizer):
    path = write_kept_project(tmp_path, tiny_student, tokenizer, method="sft")
    _with_trainer(
        path,
        {
            "warmup_steps": 2,
            "lr_scheduler_type": "cosine",
            "weight_decay": 0.01,
            "max_grad_norm": 0.5,
            "logging_steps": 2,
            "adam_beta2": 0.98,
        },
    )
    config = load_config(path)

    args = training_args(config, tmp_path / "checkpoints", use_gpu=False)

    assert (args.warmup_steps, args.lr_scheduler_type.value, args.weight_decay) == (2, "cosine", 0.01)
    assert (args.max_grad_norm, args.logging_steps, args.adam_beta2) == (0.5, 2, 0.98)
    assert args.report_to == [] or args.report_to == ["none"] or args.report_to == "none"  # the default stays off
    assert (args.learning_rate, args.per_device_train_batch_size, args.max_steps) == (1e-2, 4, 12)  # ours


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        (
            {"warmup_step": 10},
            "unknown key 'student.trainer.warmup_step': not a field of TRL's SFTConfig / TrainingArguments "
            "(trl {trl}); did you mean 'warmup_steps'?",
        ),
        (
            {"learning_rate": 0.1},
            "'student.trainer.learning_rate' is set by synthdistill: use student.learning_rate",
        ),
        (
            {"output_dir": "elsewhere"},
            "'student.trainer.output_dir' is set by synthdistill: use the run folder's layout "
            "(RunLayout.checkpoints_dir)",
        ),
        (
            {"lr_scheduler_type": "sideways"},
            "'student.trainer.lr_scheduler_type': TRL's SFTConfig refused it: sideways is not a valid "
            "SchedulerType, please select one of ['linear', 'cosine',",
        ),
    ],
)
def test_a_bad_trainer_field_is_exit_2_at_its_line(tmp_path, tiny_student, tokenizer, capsys, trainer, message):
    import trl

    path = write_kept_project(tmp_path, tiny_student, tokenizer, method="sft")
    line = _with_trainer(path, trainer)

    rc = main(["train", "-c", str(path)])

    err = capsys.readouterr().err
    assert rc == 2
    assert f"{path}:{line}" in err
    assert message.format(trl=trl.__version__) in err
    assert "Traceback" not in err
    assert not (tmp_path / "outputs" / "tiny" / "student").exists()


def test_report_to_an_integration_that_is_not_installed_is_refused(tmp_path, tiny_student, tokenizer):
    path = write_kept_project(tmp_path, tiny_student, tokenizer, method="sft")
    line = _with_trainer(path, {"report_to": "wandb"})
    with pytest.raises(ConfigError, match=r"'student.trainer.report_to': wandb is not installed") as error:
        train.run(load_config(path))
    assert error.value.line == line


def test_report_to_tensorboard_and_trackio_log_locally(tmp_path, tiny_student, tokenizer, monkeypatch, capsys):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    # trackio reads TRACKIO_DIR once, on import: an earlier test may have imported it already
    for name in [n for n in sys.modules if n == "trackio" or n.startswith("trackio.")]:
        monkeypatch.delitem(sys.modules, name)
    path = write_kept_project(tmp_path / "project", tiny_student, tokenizer, method="sft", max_steps=3)
    _with_trainer(path, {"report_to": ["tensorboard", "trackio"], "warmup_steps": 1})
    config = load_config(path)
    build.run(config)

    summary = train.run(config)

    assert summary.steps == 3
    out, err = capsys.readouterr()
    assert out == "" and "Trackio project initialized: tiny" in err  # stdout stays the CLI's (--json)
    events = list((config.layout.checkpoints_dir / "runs").rglob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("train/loss")] == [1, 2, 3]

    import trackio
    from trackio.sqlite_storage import SQLiteStorage

    assert trackio.utils.TRACKIO_DIR == tmp_path / "trackio"  # local only: no Space, nothing sent
    assert "tiny" in SQLiteStorage.get_projects()  # the project is named after the run
    [run] = SQLiteStorage.get_runs("tiny")
    assert run == "tiny"  # the run after the student (student.name, else the run's name)
    logs = SQLiteStorage.get_logs("tiny", run)
    assert [entry["train/global_step"] for entry in logs if "train/loss" in entry] == [1, 2, 3]


def test_a_bad_trainer_field_from_set_names_the_override(tmp_path, tiny_student, tokenizer, capsys):
    path = write_kept_project(tmp_path, tiny_student, tokenizer, method="sft")

    rc = main(["train", "-c", str(path), "--set", "student.trainer.warmup_step=10"])

    err = capsys.readouterr().err
    assert rc == 2
    assert (
        "--set student.trainer.warmup_step=10: unknown key 'student.trainer.warmup_step': not a field of TRL's "
        "SFTConfig / TrainingArguments"
    ) in err
    assert "did you mean 'warmup_steps'?" in err and "Traceback" not in err
