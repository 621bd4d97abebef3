"""`accelerate launch` / `torchrun` run the same `synthdistill train` in one or several processes.

Several processes run here as CPU data parallelism (torchrun, gloo): the same accelerate/Trainer
path as several GPUs (sharded batches, main-process-first init, one writer) but without NCCL.
Several GPUs with FSDP or DeepSpeed are not exercised in CI (no GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthdistill import build
from synthdistill.config import load_config
from synthdistill.run_layout import RunLayout
from tests.server_process import free_port
from tests.training_fixtures import load_weights, write_gemma_teacher, write_kept_project, write_tiny_llama

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "accelerate"


def test_accelerate_launch_trains_the_student(tmp_path, smollm2_dir, tokenizer):
    tiny = write_tiny_llama(tmp_path / "tiny-llama", smollm2_dir)
    project = tmp_path / "project"
    project.mkdir()
    path = write_kept_project(project, tiny, tokenizer, method="kd", max_steps=3)
    config = load_config(path)
    build.run(config)
    launcher = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "ACCELERATE_CONFIG_FILE": str(tmp_path / "no-default-config.yaml")}

    done = subprocess.run(
        [str(launcher), "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--cpu", "-m", "synthdistill", "--json", "train", "-c", str(path)],
        check=False, capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{\n") :])  # --json: the summary is all of stdout
    assert summary["method"] == "kd" and summary["steps"] == 3 and summary["device"] == "cpu"
    student = config.run_dir / "student"
    assert (student / "model.safetensors").exists()
    assert json.loads((student / "train.json").read_text())["steps"] == 3


@pytest.mark.parametrize("name", ["fsdp.yaml", "deepspeed_zero2.yaml"])
def test_example_accelerate_configs_parse(name):
    """The shipped configs are valid YAML that accelerate's own loader accepts."""
    from accelerate.commands.config.config_args import load_config_from_file

    text = (EXAMPLES / name).read_text()
    assert yaml.safe_load(text)["compute_environment"] == "LOCAL_MACHINE"
    loaded = load_config_from_file(str(EXAMPLES / name))
    assert loaded.distributed_type.value == {"fsdp.yaml": "FSDP", "deepspeed_zero2.yaml": "DEEPSPEED"}[name]


def _torchrun(path: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    launcher = Path(sys.executable).with_name("torchrun")
    return subprocess.run(
        [str(launcher), "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "synthdistill", "--json", "train", "-c", str(path), *extra],
        check=False, capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize("method", ["kd", "sft"])
def test_two_processes_train_one_student_and_resume(tmp_path, smollm2_dir, tokenizer, method):
    """Two data-parallel processes: one pruned init, global batch 2 x 4, one summary, one writer, resume."""
    tiny = write_tiny_llama(tmp_path / "tiny-llama", smollm2_dir)
    project = tmp_path / "project"
    project.mkdir()
    path = write_kept_project(
        project, tiny, tokenizer, method=method, max_steps=4, checkpoint_every=2, init={"prune_layers_to": 2}
    )
    config = load_config(path)
    build.run(config)

    done = _torchrun(path, tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"method"') == 1  # rank 1 trains but prints nothing
    summary = json.loads(done.stdout[done.stdout.index("{\n") :])
    # 8 train rows, batch 4 per process: one step per epoch only if both processes share each epoch
    assert summary["examples"] == 8 and summary["steps"] == 4 and summary["epochs"] == 4.0
    assert summary["train_loss_last"] < summary["train_loss_first"]
    init = load_weights(config.run_dir / "student-init" / "model.safetensors")
    assert json.loads((config.run_dir / "student-init" / "init.json").read_text())["kept_layers"] == [0, 3]
    trained = load_weights(config.run_dir / "student" / "model.safetensors")
    assert set(trained) == set(init)
    assert all(not init[name].equal(trained[name]) for name in init)
    checkpoints = config.run_dir / "student" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]

    path.write_text(path.read_text().replace("max_steps: 4", "max_steps: 6"))
    resumed = _torchrun(path, tmp_path, "--resume")

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = json.loads(resumed.stdout[resumed.stdout.index("{\n") :])
    assert again["resumed_from"].endswith("checkpoint-4") and again["steps"] == 6
    assert [entry["step"] for entry in again["loss_history"]] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_two_processes_train_with_a_local_teacher_and_resume(tmp_path, smollm2_dir, tokenizer):
    """Feature + relation parts under DDP: the projection trains in both processes, the teacher stays outside."""
    tiny = write_tiny_llama(tmp_path / "tiny-llama", smollm2_dir, tie=False)
    teacher = write_tiny_llama(tmp_path / "teacher", smollm2_dir, layers=6, hidden=96, seed=1)
    project = tmp_path / "project"
    project.mkdir()
    kd = {"teacher": str(teacher), "features": {"layers": [[1, 3]]}, "relations": {"loss": "distance+angle"}}
    path = write_kept_project(project, tiny, tokenizer, method="kd", max_steps=2, checkpoint_every=2, kd=kd)
    config = load_config(path)
    build.run(config)

    done = _torchrun(path, tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{\n") :])
    assert summary["steps"] == 2 and set(summary["loss_parts"]) == {"ce", "kl", "feature", "relation"}
    assert summary["local_teacher"]["forwards"] == 2  # rank 0's own teacher: one forward per batch
    trained = load_weights(config.run_dir / "student" / "model.safetensors")
    assert set(trained) == set(load_weights(tiny / "model.safetensors"))  # no projection saved
    checkpoint = config.layout.checkpoints_dir / "checkpoint-2"
    assert load_weights(RunLayout.checkpoint_projections(checkpoint))["maps.0.weight"].shape == (96, 64)  # rank 0's
    path.write_text(path.read_text().replace("max_steps: 2", "max_steps: 3"))
    resumed = _torchrun(path, tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = json.loads(resumed.stdout[resumed.stdout.index("{\n") :])
    assert again["resumed_from"].endswith("checkpoint-2") and again["steps"] == 3


def test_two_processes_train_from_a_teacher_with_another_tokenizer(tmp_path, smollm2_dir, tokenizer):
    """Cross-tokenizer feature + relation parts under DDP: each rank reads its own shard's teacher tokens."""
    tiny = write_tiny_llama(tmp_path / "tiny-llama", smollm2_dir, tie=False)
    teacher = write_gemma_teacher(tmp_path / "gemma-teacher")
    project = tmp_path / "project"
    project.mkdir()
    kd = {"teacher": str(teacher), "features": {"layers": [[1, 2]]}, "relations": {"loss": "distance"}}
    path = write_kept_project(project, tiny, tokenizer, method="kd", max_steps=2, kd=kd)
    build.run(load_config(path))

    done = _torchrun(path, tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{\n") :])
    assert summary["steps"] == 2 and set(summary["loss_parts"]) == {"ce", "kl", "feature", "relation"}
    local = summary["local_teacher"]
    assert local["forwards"] == 2 and 0.5 < local["cross_tokenizer"]["matched_share"] <= 1.0
    trained = load_weights(project / "outputs" / "tiny" / "student" / "model.safetensors")
    before = load_weights(tiny / "model.safetensors")
    assert set(trained) == set(before) and all(not before[name].equal(trained[name]) for name in before)
