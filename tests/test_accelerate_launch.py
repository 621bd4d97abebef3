"""`accelerate launch -m synthdistill train` runs the same training under accelerate's launcher.

Only a single CPU process is exercised here; several GPUs (FSDP, DeepSpeed) are untested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthdistill.config import load_config
from synthdistill.datasets import build_datasets
from tests.training_fixtures import write_kept_project, write_tiny_llama

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "accelerate"


def test_accelerate_launch_trains_the_student(tmp_path, smollm2_dir, tokenizer):
    tiny = write_tiny_llama(tmp_path / "tiny-llama", smollm2_dir)
    project = tmp_path / "project"
    project.mkdir()
    path = write_kept_project(project, tiny, tokenizer, method="kd", max_steps=3)
    config = load_config(path)
    build_datasets(config)
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
