"""`train --resume` restores feature KD's projections, for full and LoRA students alike.

A LoRA checkpoint holds only the adapter; the projections are saved beside it in every checkpoint
(RunLayout.checkpoint_projections) and loaded before training continues.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from synthdistill import build, train
from synthdistill.config import load_config
from synthdistill.run_layout import RunLayout
from synthdistill.train.local_teacher import restore_projections
from synthdistill.train.loss_parts import FeatureProjections
from tests.training_fixtures import load_weights, write_kept_project, write_tiny_llama


@pytest.fixture(scope="module")
def student_dir(smollm2_dir, tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("student"), smollm2_dir, layers=2, tie=False)


@pytest.fixture(scope="module")
def teacher_dir(smollm2_dir, tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("teacher"), smollm2_dir, layers=3, hidden=96, seed=1)


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}], ids=["full", "lora"])
def test_resume_continues_with_the_checkpoints_projection(tmp_path, student_dir, teacher_dir, tokenizer, lora):
    kd = {"teacher": str(teacher_dir), "features": {"layers": [[1, 2]]}}
    path = write_kept_project(
        tmp_path, student_dir, tokenizer, kd=kd, lora=lora, max_steps=4, checkpoint_every=2, batch_size=2
    )
    config = load_config(path)
    build.run(config)
    train.run(config)
    checkpoints = config.layout.checkpoints_dir
    saved = {n: load_weights(RunLayout.checkpoint_projections(checkpoints / f"checkpoint-{n}")) for n in (2, 4)}
    key = "maps.0.weight"
    assert saved[2][key].shape == (96, 64) and not torch.equal(saved[2][key], saved[4][key])
    if lora:  # the trainer's own checkpoint of a LoRA student is the adapter alone
        adapter = load_weights(checkpoints / "checkpoint-2" / "adapter_model.safetensors")
        assert not any("kd_feature_projections" in name for name in adapter)

    # the run stops after step 2: step 4's checkpoint never happened
    shutil.rmtree(checkpoints / "checkpoint-4")
    summary = train.run(config, resume=True)

    assert summary.resumed_from == str(checkpoints / "checkpoint-2") and summary.steps == 4
    again = load_weights(RunLayout.checkpoint_projections(checkpoints / "checkpoint-4"))
    # steps 3 and 4 started from checkpoint 2's projection: the uninterrupted run's step 4, to rounding
    torch.testing.assert_close(again[key], saved[4][key], rtol=1e-5, atol=1e-6)
    fresh = FeatureProjections([(1, 2)], 64, 96)
    assert restore_projections(fresh, checkpoints / "checkpoint-2")
    assert torch.equal(fresh.maps[0].weight.detach(), saved[2][key])
    assert not restore_projections(fresh, tmp_path)  # a folder without projections: nothing restored
