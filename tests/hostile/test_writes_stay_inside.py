"""Issue 14, point 3: writes stay inside the project and never follow a planted symlink."""

from __future__ import annotations

import json
import os

import yaml

from tests.harvest_fixtures import write_project
from tests.hostile.cli_process import run_cli
from tests.openai_server import FakeOpenAIServer


def _plant_link(link, victim) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("precious\n")
    link.symlink_to(victim)


def test_a_symlinked_decision_json_is_refused_and_its_target_untouched(tmp_path):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path / "project", server.base_url, 3)
        link = tmp_path / "project" / "outputs" / "run" / "harvest" / "decision.json"
        victim = tmp_path / "victim.txt"
        _plant_link(link, victim)
        result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
        sent = server.stats()["requests"]
    assert result.code == 2, result.err
    assert (
        result.err.strip()
        == f"error: {link}: is a symlink (to {victim}); refusing to write through it: remove the link"
    )
    assert victim.read_text() == "precious\n"
    assert sent == 0


def test_a_symlinked_kept_parquet_and_audit_report_are_refused(tmp_path):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path / "project", server.base_url, 3)
        assert run_cli("harvest", "-c", str(config), cwd=tmp_path).code == 0
    run_dir = tmp_path / "project" / "outputs" / "run"
    for stage, relative in (("filter", "filtered/kept.parquet"), ("audit", "audit/report.md")):
        victim = tmp_path / f"victim-{stage}.txt"
        _plant_link(run_dir / relative, victim)
        result = run_cli(stage, "-c", str(config), cwd=tmp_path)
        assert result.code == 2, result.err
        assert result.err.strip().startswith(f"error: {run_dir / relative}: is a symlink (to {victim})")
        assert victim.read_text() == "precious\n"


def test_a_symlinked_subfolder_leading_out_is_refused(tmp_path):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path / "project", server.base_url, 3)
        assert run_cli("harvest", "-c", str(config), cwd=tmp_path).code == 0
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        (tmp_path / "project" / "outputs" / "run" / "filtered").symlink_to(outside)
        result = run_cli("filter", "-c", str(config), cwd=tmp_path)
    assert result.code == 2, result.err
    assert "its folder leads outside" in result.err and "refusing to write there" in result.err
    assert list(outside.iterdir()) == []


def _config_with_output_dir(tmp_path, base_url: str, output_dir: str, **extra):
    config = write_project(tmp_path / "project", base_url, 3)
    data = yaml.safe_load(config.read_text())
    data = {"name": data.pop("name"), "output_dir": output_dir, **extra, **data}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def test_output_dir_outside_the_project_is_refused_at_its_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    for output_dir, target in (
        (str(tmp_path / "abs"), tmp_path / "abs"),
        ("../../x", tmp_path.parent / "x"),
        ("~/x", home / "x"),
    ):
        config = _config_with_output_dir(tmp_path, "http://127.0.0.1:9/v1", output_dir)
        result = run_cli("harvest", "-c", str(config), cwd=tmp_path, env=env)
        assert result.code == 2, result.err
        assert result.err.strip() == (
            f"error: {config}:2: output_dir '{output_dir}' leads outside the project folder {config.parent} "
            f"(to {target.resolve()}); pass --allow-outside or set allow_outside_project: true to write there"
        )
        assert not target.exists()


def test_a_symlinked_outputs_folder_counts_as_outside(tmp_path):
    config = write_project(tmp_path / "project", "http://127.0.0.1:9/v1", 3)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "project" / "outputs").symlink_to(tmp_path / "elsewhere")
    result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
    assert result.code == 2, result.err
    assert "output_dir 'outputs' leads outside the project folder" in result.err


def test_allow_outside_by_flag_or_config_writes_there(tmp_path):
    with FakeOpenAIServer() as server:
        config = _config_with_output_dir(tmp_path, server.base_url, str(tmp_path / "abs"))
        by_flag = run_cli("harvest", "-c", str(config), "--allow-outside", "--json", cwd=tmp_path)
        config = _config_with_output_dir(tmp_path, server.base_url, str(tmp_path / "abs2"), allow_outside_project=True)
        by_config = run_cli("harvest", "-c", str(config), "--json", cwd=tmp_path)
    assert by_flag.code == 0, by_flag.err
    assert by_config.code == 0, by_config.err
    assert json.loads(by_flag.out)["answered"] == 3
    assert (tmp_path / "abs" / "run" / "harvest" / "ledger.sqlite").is_file()
    assert (tmp_path / "abs2" / "run" / "harvest" / "ledger.sqlite").is_file()


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    from synthdistill.safe_write import write_lines, write_text

    write_text(tmp_path / "a.json", "{}\n", inside=tmp_path)
    write_lines(tmp_path / "b.jsonl", ["1", "2"], inside=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.jsonl"]
    assert (tmp_path / "b.jsonl").read_text() == "1\n2\n"
