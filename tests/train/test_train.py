"""Real TRL training steps on a tiny student: parameters change and the loss falls."""

from __future__ import annotations

import json

import pytest

from synthdistill import build, train
from synthdistill.config import load_config
from synthdistill.errors import StageError
from tests.training_fixtures import load_weights as _weights
from tests.training_fixtures import write_kept_project


@pytest.mark.parametrize("method", ["kd", "sft"])
def test_training_changes_every_parameter_and_lowers_the_loss(tmp_path, tiny_student, tokenizer, method):
    config = load_config(write_kept_project(tmp_path, tiny_student, tokenizer, method=method))
    built = build.run(config)
    assert built.sft_rows == {"train": 8, "validation": 2}
    assert built.kd_rows == {"train": 8, "validation": 2}
    events = []

    summary = train.run(config, progress=events.append)

    assert summary.method == method
    assert summary.steps == 12
    assert summary.examples == 8
    assert summary.train_loss_last < summary.train_loss_first * 0.8
    before, after = (
        _weights(tiny_student / "model.safetensors"),
        _weights(config.run_dir / "student" / "model.safetensors"),
    )
    assert set(before) == set(after)
    unchanged = [name for name in before if (before[name] == after[name]).all()]
    assert unchanged == []
    assert events[-1]["step"] == 12 and any("loss" in e for e in events)
    saved = json.loads((config.run_dir / "student" / "train.json").read_text())
    assert saved["steps"] == 12 and len(saved["loss_history"]) == 12
    history = saved["loss_history"]
    assert [entry["step"] for entry in history] == [float(step) for step in range(1, 13)]
    assert all(entry["learning_rate"] > 0 and entry["loss"] > 0 for entry in history)
    parts = saved["loss_parts"]
    if method == "kd":
        assert set(parts) == {"ce", "kl"} and all(set(entry["parts"]) == {"ce", "kl"} for entry in history)
        assert saved["kd_loss_path"] == "hidden"  # a Llama student: no [batch, seq, vocab] logits are built
    else:
        # sft: the loss is its one part, the cross-entropy
        assert set(parts) == {"ce"} and all(entry["parts"] == {"ce": entry["loss"]} for entry in history)
        assert saved["kd_loss_path"] is None
    for name, values in parts.items():
        assert values == {"first": history[0]["parts"][name], "last": history[-1]["parts"][name]}
    assert parts["ce"]["last"] < parts["ce"]["first"]
    card = (config.run_dir / "student" / "README.md").read_text()
    assert "base_model_relation: finetune" in card
    assert f"Method: {method}" in card


def test_kd_without_a_kd_dataset_says_what_to_do(tmp_path, tiny_student, tokenizer):
    config = load_config(write_kept_project(tmp_path, tiny_student, tokenizer, method="kd"))
    with pytest.raises(StageError, match="run `synthdistill build`, or train with --method sft"):
        train.run(config)


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_student, tokenizer):
    path = write_kept_project(tmp_path, tiny_student, tokenizer, method="sft", max_steps=4, checkpoint_every=2)
    config = load_config(path)
    build.run(config)
    first = train.run(config)
    assert first.steps == 4
    checkpoints = sorted(p.name for p in (config.run_dir / "student" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]

    text = path.read_text().replace("max_steps: 4", "max_steps: 6")
    path.write_text(text)
    resumed = train.run(load_config(path), resume=True)
    assert resumed.resumed_from.endswith("checkpoint-4")
    assert resumed.steps == 6
    # the history restored from checkpoint-4 continues with steps 5 and 6, each logged once
    assert [entry["step"] for entry in resumed.loss_history] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
