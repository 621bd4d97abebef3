"""`--set key.path=value` on every stage command: typed by the schema, refused with the nearest key,
and recorded in the run folder and the audit."""

from __future__ import annotations

import json

import pytest

from synthdistill.cli import command, main
from synthdistill.config import load_config
from synthdistill.digests import file_sha256
from synthdistill.errors import ConfigError
from synthdistill.run_layout import RunLayout
from tests.audit_fixtures import ANSWERED_AS, write_project
from tests.openai_server import FakeOpenAIServer

SET_COMMANDS = [
    ("run",),
    ("harvest",),
    ("filter",),
    ("build",),
    ("train",),
    ("eval",),
    ("audit",),
    ("audit", "trace"),
    ("policy", "check"),
]


@pytest.mark.parametrize("args", SET_COMMANDS, ids=" ".join)
def test_every_command_that_reads_distill_yaml_takes_set(args):
    group = command
    for name in args:
        group = group.commands[name]
    assert any("--set" in p.opts for p in group.params)


def test_values_are_read_as_yaml_and_typed_by_the_schema(tmp_path):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    config = load_config(
        path,
        overrides=[
            "harvest.temperature=0.3",
            "harvest.packs=[prompts/a, prompts/b]",
            "use.commercial=false",
            "teacher.model=1.5",  # a text field keeps the text
            "filters=[finished, {length: {min_chars: 20}}]",
            "student.model=tiny",  # a missing section is made
            "student.kd.alpha=0.25",
        ],
    )
    assert config.harvest.temperature == 0.3
    assert config.harvest.packs == ["prompts/a", "prompts/b"]
    assert config.use.commercial is False
    assert config.teacher.model == "1.5"
    assert [(f.name, f.params.get("min_chars")) for f in config.filters] == [("finished", None), ("length", 20)]
    assert (config.student.model, config.student.kd.alpha) == ("tiny", 0.25)
    assert [o.key for o in config.overrides][:2] == ["harvest.temperature", "harvest.packs"]
    assert load_config(path).overrides == []


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (
            "harvest.temperture=0.3",
            "--set harvest.temperture=0.3: unknown key 'harvest.temperture'; did you mean 'harvest.temperature'?",
        ),
        ("studnt.model=x", "--set studnt.model=x: unknown key 'studnt.model'; did you mean 'student'?"),
        (
            "harvest.temperature=hot",
            "--set harvest.temperature=hot: 'harvest.temperature': Input should be a "
            'valid number, unable to parse string as a number (got "hot")',
        ),
        (
            "harvest.temperature=9",
            "--set harvest.temperature=9: 'harvest.temperature': Input should be less than or equal to 2 (got 9)",
        ),
        (
            "filters=[{length: {min_chars: x}}]",
            "--set filters=[{length: {min_chars: x}}]: 'filters.0': filter "
            "'length': min_chars: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "harvest.temperature.x=1",
            "--set harvest.temperature.x=1: 'harvest.temperature' takes a value, not keys below it",
        ),
        ("harvest.temperature", "--set harvest.temperature: expected key.path=value"),
        ("harvest.packs=[a", "--set harvest.packs=[a: the value is not valid YAML"),
    ],
)
def test_a_bad_override_is_exit_2_naming_the_argument(tmp_path, capsys, argument, message):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    assert main(["filter", "-c", str(path), "--set", argument]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}"), err
    assert "Traceback" not in err


def test_an_error_in_a_section_an_override_made_names_the_override(tmp_path, capsys):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")  # no student section
    assert main(["filter", "-c", str(path), "--set", "student.kd.alpha=0.3"]) == 2
    assert capsys.readouterr().err.startswith("error: --set student.kd.alpha=0.3: missing required key 'student.model'")


def test_an_unknown_key_with_no_near_one_lists_the_valid_keys(tmp_path, capsys):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    assert main(["filter", "-c", str(path), "--set", "datasets.zzz=1"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: --set datasets.zzz=1: unknown key 'datasets.zzz'; valid keys: datasets.eval_fraction, datasets.seed"
    )


def test_keys_below_a_free_mapping_are_allowed(tmp_path):
    from pydantic import BaseModel

    from synthdistill.overrides import apply_overrides, parse_overrides

    class Section(BaseModel):
        settings: dict[str, float] | None = None

    class Model(BaseModel):
        section: Section = Section()

    given = parse_overrides(Model, ["section.settings.warmup_ratio=0.1"])
    assert Model.model_validate(apply_overrides({}, given)).section.settings == {"warmup_ratio": 0.1}


def test_yaml_1_2_exponents_are_numbers(tmp_path):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    config = load_config(path, overrides=["student.model=m", "student.learning_rate=1e-4"])
    assert config.student.learning_rate == 1e-4
    assert config.overrides[1].value == 1e-4


def test_a_python_override_with_a_bad_key_names_it(tmp_path):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match=r"^override harvest.limt=2: unknown key 'harvest.limt'; did you mean"):
        load_config(path, overrides={"harvest.limt": 2})


def test_overrides_are_recorded_in_the_run_folder_and_the_audit(tmp_path, capsys):
    with FakeOpenAIServer(model=ANSWERED_AS) as server:
        path = write_project(tmp_path, server.base_url)
        assert main(["--json", "harvest", "-c", str(path), "--set", "harvest.limit=2", "--set", "harvest.seed=7"]) == 0
        assert json.loads(capsys.readouterr().out)["prompts"] == 2
    layout = RunLayout(load_config(path).run_dir)
    snapshot = json.loads(layout.config_snapshot("harvest").read_text())
    assert snapshot["stage"] == "harvest"
    assert snapshot["config"] == {"path": str(path), "sha256": file_sha256(path)}
    assert snapshot["overrides"] == [
        {"key": "harvest.limit", "value": 2, "given_as": "--set harvest.limit=2"},
        {"key": "harvest.seed", "value": 7, "given_as": "--set harvest.seed=7"},
    ]
    assert (snapshot["settings"]["harvest"]["limit"], snapshot["settings"]["harvest"]["seed"]) == (2, 7)

    assert main(["filter", "-c", str(path)]) == 0  # no overrides: no snapshot
    assert not layout.config_snapshot("filter").exists()
    assert main(["audit", "-c", str(path), "--set", "use.attestation=Used only for tests here"]) == 0
    capsys.readouterr()
    manifest = json.loads(layout.manifest.read_text())
    config_entry = manifest["inputs"]["config"]
    assert config_entry["overrides"] == [
        {
            "key": "use.attestation",
            "value": "Used only for tests here",
            "given_as": "--set use.attestation=Used only for tests here",
        }
    ]
    assert config_entry["settings"]["use"]["attestation"] == "Used only for tests here"
    assert len(config_entry["effective_sha256"]) == 64
    harvest_entry = manifest["inputs"]["stage_overrides"]["harvest"]
    assert [o["given_as"] for o in harvest_entry["overrides"]] == ["--set harvest.limit=2", "--set harvest.seed=7"]
    assert harvest_entry["effective_sha256"] == snapshot["effective_sha256"]
    assert "config/harvest.json" in [a["path"] for a in manifest["artifacts"]]
    report = layout.report_md.read_text()
    assert "overrides (harvest)" in report and "--set harvest.limit=2; --set harvest.seed=7" in report
    assert "overrides (audit)" in report

    with FakeOpenAIServer(model=ANSWERED_AS) as server:  # a later run of the stage replaces the snapshot
        assert main(["harvest", "-c", str(path), "--set", f"teacher.base_url={server.base_url}"]) == 0
    assert json.loads(layout.config_snapshot("harvest").read_text())["overrides"][0]["key"] == "teacher.base_url"


def test_a_stage_run_without_overrides_removes_its_old_snapshot(tmp_path):
    with FakeOpenAIServer(model=ANSWERED_AS) as server:
        path = write_project(tmp_path, server.base_url)
        assert main(["harvest", "-c", str(path), "--set", "harvest.limit=1"]) == 0
        layout = RunLayout(load_config(path).run_dir)
        assert layout.config_snapshot("harvest").exists()
        assert main(["harvest", "-c", str(path)]) == 0
    assert not layout.config_snapshot("harvest").exists()


def test_policy_check_applies_overrides_to_the_use(tmp_path, capsys):
    path = write_project(tmp_path, "http://127.0.0.1:9/v1")
    assert main(["--json", "policy", "check", "-c", str(path), "--set", "use.commercial=false"]) == 0
    assert json.loads(capsys.readouterr().out)["use"]["commercial"] is False
    assert main(["policy", "check", "--set", "use.commercial=false", "-m", "x"]) == 2
    assert "--set overrides a key of distill.yaml: give -c distill.yaml too" in capsys.readouterr().err
