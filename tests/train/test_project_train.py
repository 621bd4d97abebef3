"""`Project.train()` and `Project.evaluate()` return what `train --json` and `eval --json` print."""

from __future__ import annotations

import json

from synthdistill import Project
from synthdistill.cli import main
from tests.test_project import _comparable
from tests.training_fixtures import write_kept_project


def test_train_and_evaluate_return_the_cli_json_summaries(tmp_path, tiny_student, tokenizer, capsys):
    cli_config = write_kept_project(tmp_path / "cli", tiny_student, tokenizer, method="sft", max_steps=3)
    api_config = write_kept_project(tmp_path / "api", tiny_student, tokenizer, method="sft", max_steps=3)
    by_cli = {}
    for stage in ("build", "train", "eval"):
        assert main(["--json", stage, "-c", str(cli_config), "--set", "student.learning_rate=0.005"]) == 0
        by_cli[stage] = json.loads(capsys.readouterr().out)
    project = Project(api_config, overrides={"student.learning_rate": 0.005})
    by_api = {"build": project.build(), "train": project.train(), "eval": project.evaluate()}
    assert by_api["train"]["steps"] == 3
    assert by_api["train"]["train_loss_last"] < by_api["train"]["train_loss_first"]
    for stage in by_cli:
        assert _comparable(by_api[stage], tmp_path / "api") == _comparable(by_cli[stage], tmp_path / "cli"), stage
