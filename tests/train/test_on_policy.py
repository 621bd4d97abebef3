"""On-policy distillation on a tiny real student: it samples, the in-process SmolLM2 teacher scores, it learns."""

from __future__ import annotations

import json

import pytest
import yaml

from synthdistill import build, train
from synthdistill.config import load_config
from synthdistill.errors import ConfigError
from synthdistill.scoring.store import ScoreStore
from synthdistill.train.on_policy import OFFLINE, ON_POLICY, round_prompts, step_kinds
from tests.training_fixtures import load_weights, write_kept_project

SMALL = {"rounds": 2, "steps_per_round": 4, "prompts_per_round": 3, "samples_per_prompt": 2, "max_new_tokens": 8}


def _scored_rows(config) -> int:
    with ScoreStore(config.layout.scores) as store:
        return store.counts()["done"]


def _project(tmp_path, tiny_student, tokenizer, **on_policy):
    path = write_kept_project(
        tmp_path, tiny_student, tokenizer, method="on-policy", on_policy={**SMALL, **on_policy}, learning_rate=3e-2
    )
    config = load_config(path)
    build.run(config)
    return path, config


def test_on_policy_training_changes_every_parameter_and_lowers_the_divergence(tmp_path, tiny_student, tokenizer):
    """The in-process SmolLM2 teacher scores the tiny student's samples through synthdistill.scoring."""
    _, config = _project(tmp_path, tiny_student, tokenizer, rounds=3)

    summary = train.run(config)

    assert summary.method == "on-policy" and summary.steps == 12
    info = summary.on_policy
    assert info["rounds"] == 3 and info["samples_scored"] == 3 * 3 * 2
    assert _scored_rows(config) == 18 and info["scoring_requests_sent"] == 18  # every sample scored once
    assert info["batches"] == {ON_POLICY: 12, OFFLINE: 0}
    assert info["teacher_tokens_scored"] > 0
    # the teacher has the student's tokenizer: every answer token gets the teacher's top-k
    assert summary.teacher_target_share == 1.0 and info["teacher_targets"]["exact"] == 18
    assert info["scoring_endpoints"] == []  # in-process: no host
    assert info["decision"] == "allow-with-obligations" and info["policy_id"] == "smollm2"
    assert all(entry["batch"] == ON_POLICY and set(entry["parts"]) == {"jsd"} for entry in summary.loss_history)
    jsd = [entry["parts"]["jsd"] for entry in summary.loss_history]
    assert sum(jsd[-4:]) < sum(jsd[:4]) * 0.95
    before, after = (
        load_weights(tiny_student / "model.safetensors"),
        load_weights(config.layout.student_dir / "model.safetensors"),
    )
    assert [name for name in before if (before[name] == after[name]).all()] == []
    saved = json.loads(config.layout.train_summary.read_text())
    assert (
        saved["teacher_target_share"] == 1.0
        and saved["on_policy"]["teacher_tokens_scored"] == info["teacher_tokens_scored"]
    )
    lines = [json.loads(line) for line in config.layout.on_policy_samples.read_text().splitlines()]
    assert [line["round"] for line in lines] == [0] * 6 + [1] * 6 + [2] * 6
    assert sum(line["teacher_tokens"] for line in lines) == info["teacher_tokens_scored"]
    card = config.layout.student_card.read_text()
    assert "Method: on-policy" in card and "teacher tokens scored" in card
    samples_card = config.layout.on_policy_card.read_text()
    metadata = yaml.safe_load(samples_card.split("---\n")[1])
    assert metadata["tags"][-1] == "on-policy-dataset" and metadata["size_categories"] == ["n<1K"]
    assert metadata["configs"][0]["data_files"] == [{"split": "train", "path": "on-policy-samples.jsonl"}]
    assert "| rounds | 3 × 4 steps (lambda 1.0: 12 on-policy and 0 offline KD batches) |" in samples_card
    assert "| samples | 18 scored, 18 with teacher targets; 18 lines in this file |" in samples_card
    assert f"| teacher tokens scored | {info['teacher_tokens_scored']} answer," in samples_card
    assert "| scoring endpoint(s) | in-process (`transformers` backend) |" in samples_card
    assert "| gate decision | allow-with-obligations (policy `smollm2`) |" in samples_card
    assert "## Teacher terms" in samples_card and "train/scores.sqlite" in samples_card


def test_lambda_half_mixes_batches_and_a_resumed_round_scores_nothing_again(tmp_path, tiny_student, tokenizer):
    path, config = _project(tmp_path, tiny_student, tokenizer, **{"lambda": 0.5})

    class Killed(Exception):
        pass

    def kill_in_round_one(event):
        if event["step"] == 6:  # round 1's second step: its samples are scored, the round is unfinished
            raise Killed

    with pytest.raises(Killed):
        train.run(config, progress=kill_in_round_one)
    assert _scored_rows(config) == 12  # rounds 0 and 1: 3 prompts × 2 samples each
    assert [p.name for p in config.layout.on_policy_round_dirs()] == ["round-0000"]

    resumed = train.run(load_config(path), resume=True)

    # round 1 was sampled again from round 0's checkpoint: the same samples (the same score keys),
    # answered by the ledger without a request
    assert _scored_rows(config) == 12
    assert resumed.on_policy["scoring_requests_sent"] == 6  # round 0's, restored; round 1 sent none again
    assert resumed.steps == 8 and resumed.resumed_from.endswith("round-0000")
    assert resumed.on_policy["batches"] == {ON_POLICY: 4, OFFLINE: 4}
    assert [entry["step"] for entry in resumed.loss_history] == [float(s) for s in range(1, 9)]
    kinds = [entry["batch"] for entry in resumed.loss_history]
    assert kinds == step_kinds(0.5, 4, 0, 0) + step_kinds(0.5, 4, 0, 1)
    for entry in resumed.loss_history:
        assert set(entry["parts"]) == ({"jsd"} if entry["batch"] == ON_POLICY else {"ce", "kl"})
    assert resumed.on_policy["samples_scored"] == 12
    lines = [json.loads(line) for line in config.layout.on_policy_samples.read_text().splitlines()]
    assert [line["round"] for line in lines] == [0] * 6 + [1] * 6  # round 1's lines written once


def test_step_kinds_and_round_prompts_are_exact_and_seeded():
    kinds = step_kinds(0.5, 8, seed=3, round_index=2)
    assert kinds.count(ON_POLICY) == 4 and kinds == step_kinds(0.5, 8, seed=3, round_index=2)
    assert step_kinds(1.0, 5, 0, 0) == [ON_POLICY] * 5 and step_kinds(0.0, 5, 0, 0) == [OFFLINE] * 5
    prompts = list("abcde")
    assert round_prompts(prompts, 0, 3) == ["a", "b", "c"]
    assert round_prompts(prompts, 1, 3) == ["d", "e", "a"]  # wraps around
    assert round_prompts(prompts, 0, 9) == prompts


def test_on_policy_settings_are_checked(tmp_path, tiny_student, tokenizer):
    path = write_kept_project(tmp_path, tiny_student, tokenizer, method="on-policy", on_policy={"lambda": 0.25})
    settings = load_config(path).student.on_policy
    assert (settings.lambda_, settings.beta, settings.samples_per_prompt, settings.rounds) == (0.25, 0.5, 1, 4)
    path.write_text(path.read_text().replace("lambda: 0.25", "lambda: 1.5"))
    with pytest.raises(ConfigError, match=r"'student.on_policy.lambda': Input should be less than or equal to 1"):
        load_config(path)
    path.write_text(path.read_text().replace("lambda: 1.5", "lamda: 0.5"))
    with pytest.raises(ConfigError, match="lamda"):
        load_config(path)


def test_the_on_policy_example_is_a_valid_cpu_config():
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[2] / "examples" / "on-policy" / "distill.yaml")
    student = config.student
    assert student.method == "on-policy" and config.teacher.backend == "transformers"
    assert (student.on_policy.lambda_, student.on_policy.beta, student.on_policy.rounds) == (0.5, 0.5, 4)
    assert config.harvest.top_logprobs == 20  # lambda < 1: its offline batches need the KD dataset
