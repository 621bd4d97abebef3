"""The Python API: `synthdistill.Project` returns what `--json` prints, raises the typed errors,
takes the run folder's lock per call, and harvests inside a running event loop (a notebook)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import synthdistill
from synthdistill import Project
from synthdistill.cli import main
from synthdistill.errors import ConfigError, NothingAnswered, RunFolderBusy, StageError
from synthdistill.run_lock import run_folder_lock
from tests.audit_fixtures import ANSWERED_AS, QUESTIONS, write_project
from tests.openai_server import FakeOpenAIServer

VOLATILE = {"seconds", "manifest_sha256"}  # wall time, and the manifest that records the time it was written


def _comparable(value: Any, root: Path) -> Any:
    """A summary with its volatile values blanked (keys kept) and the project folder written as <root>."""
    if isinstance(value, dict):
        return {k: "<volatile>" if k in VOLATILE else _comparable(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(str(root), "<root>")
    return value


def _cli_json(capsys, *args: str) -> dict:
    assert main(["--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_project_is_exported_by_the_package():
    assert synthdistill.Project is Project


def test_each_method_returns_the_summary_the_cli_prints_under_json(tmp_path, capsys):
    cli_root, api_root = tmp_path / "cli", tmp_path / "api"
    cli_root.mkdir(), api_root.mkdir()
    by_cli: dict[str, dict] = {}
    by_api: dict[str, dict] = {}
    with FakeOpenAIServer(schedule=["500"], model=ANSWERED_AS) as server:
        cli_config = write_project(cli_root, server.base_url)
        by_cli["harvest"] = _cli_json(capsys, "harvest", "-c", str(cli_config))
    with FakeOpenAIServer(schedule=["500"], model=ANSWERED_AS) as server:
        project = Project(write_project(api_root, server.base_url))
        by_api["harvest"] = project.harvest()
    for stage, args in (("filter", ["filter"]), ("build", ["build"]), ("audit", ["audit"])):
        by_cli[stage] = _cli_json(capsys, *args, "-c", str(cli_config))
        by_api[stage] = getattr(project, stage)()
    assert by_api["harvest"]["answered"] == len(QUESTIONS) - 1
    for stage in by_cli:
        assert _comparable(by_api[stage], api_root) == _comparable(by_cli[stage], cli_root), stage


def test_run_returns_the_summaries_of_run_json(tmp_path, capsys):
    cli_root, api_root = tmp_path / "cli", tmp_path / "api"
    cli_root.mkdir(), api_root.mkdir()
    with FakeOpenAIServer(model=ANSWERED_AS) as server:
        by_cli = _cli_json(capsys, "run", "--until", "build", "-c", str(write_project(cli_root, server.base_url)))
    with FakeOpenAIServer(model=ANSWERED_AS) as server:
        by_api = Project(write_project(api_root, server.base_url)).run(until="build")
    assert list(by_api) == ["harvest", "filter", "build", "view"]  # the run's page is the last step
    assert Path(by_api["view"]["page"]).name == "view.html" and Path(by_api["view"]["page"]).is_file()
    assert _comparable(by_api, api_root) == _comparable(by_cli, cli_root)


def test_harvest_works_inside_a_running_event_loop(tmp_path):
    """A Jupyter cell runs inside an event loop; asyncio.run() there would raise."""
    with FakeOpenAIServer(model=ANSWERED_AS) as server:
        path = write_project(tmp_path, server.base_url)

        async def notebook_cell() -> dict:
            return Project(path, overrides={"harvest.limit": 3}).harvest()

        summary = asyncio.run(notebook_cell())
    assert (summary["prompts"], summary["answered"], summary["failed"]) == (3, 3, 0)


def test_overrides_as_a_mapping_or_as_set_strings(tmp_path):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    mapping = Project(path, overrides={"harvest.limit": 2, "use.commercial": False})
    strings = Project(path, set=["harvest.limit=2", "use.commercial=false"])
    assert mapping.config.model_dump() == strings.config.model_dump()
    assert (mapping.config.harvest.limit, mapping.config.use.commercial) == (2, False)
    both = Project(path, overrides={"harvest.limit": 2}, set=["harvest.limit=4"])
    assert both.config.harvest.limit == 4  # --set strings come last
    lists = Project(path, overrides=["harvest.limit=2"], set=["use.commercial=false"])
    assert (lists.config.harvest.limit, lists.config.use.commercial) == (2, False)


def test_errors_are_the_typed_errors(tmp_path):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="unknown key 'harvest.limt'; did you mean 'harvest.limit'"):
        Project(path, overrides={"harvest.limt": 2})
    with pytest.raises(ConfigError, match="config file not found"):
        Project(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="until must be one of"):
        Project(path).run(until="deploy")
    with pytest.raises(ConfigError, match="method must be sft, kd or on-policy"):
        Project(path).train(method="dpo")


def test_a_harvest_where_every_request_fails_raises_nothing_answered_with_its_summary(tmp_path):
    with FakeOpenAIServer(model=ANSWERED_AS) as server:
        path = write_project(tmp_path, server.base_url)
        server.configure(fault_rate=1.0, fault_kinds=["500"])
        with pytest.raises(NothingAnswered) as caught:
            Project(path).harvest()
    assert caught.value.summary["answered"] == 0
    assert caught.value.summary["failed"] == len(QUESTIONS)


def test_each_call_takes_the_run_folder_lock(tmp_path):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    project = Project(path)
    with run_folder_lock(project.run_dir, "another"):
        with pytest.raises(RunFolderBusy, match="the run folder is in use by pid"):
            project.filter()


def test_a_call_reads_distill_yaml_again(tmp_path):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    project = Project(path)
    path.write_text(path.read_text().replace("name: audit-run", "name: renamed"))
    with pytest.raises(StageError, match=r"no harvest at .*/outputs/renamed/harvest/ledger.sqlite"):
        project.filter()
    assert project.run_dir.name == "renamed"
