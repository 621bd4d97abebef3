"""The README's on-policy example (examples/on-policy/distill.yaml), run end to end on small data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from synthdistill.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_on_policy_example_runs_from_harvest_to_audit(tmp_path, capsys, smollm2_dir):
    # the example's prompts are the quickstart's, by a relative path: keep the two folders side by side
    shutil.copytree(EXAMPLES / "on-policy", tmp_path / "on-policy")
    shutil.copytree(EXAMPLES / "quickstart" / "prompts", tmp_path / "quickstart" / "prompts")
    path = tmp_path / "on-policy" / "distill.yaml"
    config = yaml.safe_load(path.read_text())
    # The example, shrunk: 12 prompts, short answers, a 2-layer student, 2 rounds of 2 steps.
    config["harvest"].update(limit=12, max_tokens=24, top_logprobs=5)
    config["filters"] = ["dedup"]  # 24-token answers are mostly cut short: keep them
    config["datasets"]["eval_fraction"] = 0.25
    config["student"].update(init={"prune_layers_to": 2}, batch_size=4, max_length=128, eval_samples=1)
    config["student"]["on_policy"].update(
        rounds=2, steps_per_round=2, prompts_per_round=3, max_new_tokens=8, eval_prompts=2
    )
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    capsys.readouterr()

    rc = main(["run", "-c", str(path)])

    out = capsys.readouterr().out
    run_dir = tmp_path / "on-policy" / "outputs" / "on-policy"
    assert rc == 0, out
    assert "harvest: 12 answered, 0 failed" in out
    train = json.loads((run_dir / "student" / "train.json").read_text())
    info = train["on_policy"]
    assert train["method"] == "on-policy" and train["steps"] == 4
    # lambda 0.5 of the example: half of each round's steps are offline KD batches
    assert info["rounds"] == 2 and info["batches"] == {"on-policy": 2, "offline": 2}
    assert info["samples_scored"] == 6 and info["scoring_requests_sent"] == 6
    assert info["decision"] == "allow-with-obligations" and info["policy_id"] == "smollm2"
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["method"] == "on-policy"
    for side in ("untrained", "trained"):
        assert result[side]["teacher_nll_on_student_samples"] > 0
    samples = (run_dir / "student" / "on-policy-samples.jsonl").read_text().splitlines()
    assert len(samples) == 6
    assert "| samples | 6 scored," in (run_dir / "student" / "on-policy-samples.md").read_text()
    assert "On-policy" in (run_dir / "audit" / "report.md").read_text()
    assert main(["audit", "verify", str(run_dir)]) == 0
