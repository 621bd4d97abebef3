"""The README's quickstart path, on small data: `init` a project, then `run` every stage for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

import synthdistill
from synthdistill.cli import main

COMMANDS = ["init", "run", "plan", "harvest", "filter", "build", "train", "eval", "audit", "view", "packs", "policy"]


def test_help_lists_every_command_without_importing_heavy_libraries():
    probe = (
        "import sys; from synthdistill.cli import main; rc = main(['--help']); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules); "
        "print('RC', rc, 'HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout
    assert "RC 0 HEAVY []" in out
    for command in COMMANDS:
        assert f" {command} " in out


def test_python_dash_m_runs_the_same_cli():
    done = subprocess.run(
        [sys.executable, "-m", "synthdistill", "policy", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "check" in done.stdout and "list" in done.stdout


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"synthdistill {synthdistill.__version__}\n"
    done = subprocess.run(
        [sys.executable, "-m", "synthdistill", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, f"synthdistill {synthdistill.__version__}\n")


def test_init_refuses_to_overwrite_a_project(tmp_path, capsys):
    assert main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["init", str(tmp_path)]) == 2
    assert "already holds a distill.yaml (use --force to overwrite)" in capsys.readouterr().err


def test_init_writes_schema_lines_that_resolve_inside_the_project(tmp_path, capsys):
    assert main(["init", str(tmp_path / "p")]) == 0
    project = tmp_path / "p"
    references = {}
    for path in sorted(project.rglob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        reference = first.split("$schema=", 1)[1]
        references[path.relative_to(project).as_posix()] = reference
        assert (path.parent / reference).resolve().is_file()
    assert references == {
        "distill.yaml": "schemas/distill.schema.json",
        "policies/smollm2.yaml": "../schemas/policy.schema.json",
        "prompts/quickstart-chat/pack.yaml": "../../schemas/pack.schema.json",
    }
    shipped = Path(synthdistill.__file__).parent / "schemas"
    for name in ("distill.schema.json", "pack.schema.json", "policy.schema.json"):
        assert (project / "schemas" / name).read_bytes() == (shipped / name).read_bytes()


def test_init_then_run_goes_from_nothing_to_a_trained_student_and_eval(tmp_path, capsys, smollm2_dir):
    project = tmp_path / "project"
    assert main(["init", str(project)]) == 0
    assert {p.name for p in project.iterdir()} == {"distill.yaml", "prompts", "policies", "schemas"}
    config = yaml.safe_load((project / "distill.yaml").read_text())
    # The quickstart, shrunk: 12 prompts, short answers, a 2-layer student, 4 steps.
    config["harvest"].update(limit=12, max_tokens=24, top_logprobs=5)
    config["filters"] = ["dedup"]  # 24-token answers are mostly cut short: keep them
    config["datasets"]["eval_fraction"] = 0.25
    config["student"].update(init={"prune_layers_to": 2}, max_steps=4, batch_size=4, max_length=128)
    (project / "distill.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    capsys.readouterr()

    rc = main(["run", "-c", str(project / "distill.yaml")])

    out = capsys.readouterr().out
    run_dir = project / "outputs" / "quickstart"
    assert rc == 0
    assert "harvest: 12 answered, 0 failed" in out
    assert f"student   {run_dir / 'student'}" in out and f"eval      {run_dir / 'eval.json'}" in out
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["method"] == "kd" and result["examples"] == 3 and result["train_steps"] == 4
    assert result["trained"]["nll_per_token"] < result["untrained"]["nll_per_token"]
    assert (run_dir / "student" / "model.safetensors").exists()
    assert (run_dir / "audit" / "report.html").exists()
    # the last step: the run's page, after the audit (which does not hash it)
    assert out.rstrip().endswith(f"view      {run_dir / 'view.html'}")
    assert 'data-view-ready="no"' in (run_dir / "view.html").read_text()
    assert [s["pack"] for s in result["samples"]] == ["quickstart-chat"] * 3  # every held-out prompt (cap 8)
    trained = json.loads((run_dir / "student" / "train.json").read_text())
    assert trained["loss_parts"].keys() == {"ce", "kl", "feature"}  # the quickstart's kd + features
    assert trained["local_teacher"]["forwards"] == 4  # the teacher's hidden states, once per step
    assert main(["audit", "verify", str(run_dir)]) == 0
