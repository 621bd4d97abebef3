"""distill.yaml loading: defaults, relative paths, and errors that name file, line and key."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from synthdistill.cli import main
from synthdistill.config import DistillConfig, config_json_schema, load_config
from synthdistill.errors import ConfigError

MINIMAL = """\
name: demo
teacher:
  backend: transformers
  model: HuggingFaceTB/SmolLM2-135M-Instruct
harvest:
  packs: [prompts/p]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "distill.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_minimal_config_gets_documented_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.output_dir == "outputs"
    assert config.run_dir == tmp_path / "outputs" / "demo"
    assert [f.name for f in config.filters] == ["finished", "dedup"]
    assert config.harvest.top_logprobs == 20
    assert config.teacher.max_concurrency == 64
    assert config.use.commercial is True
    assert config.student is None


def test_empty_filters_list_means_none(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + "filters: []\n"))
    assert config.filters == []


def test_unknown_key_names_file_line_path_and_suggestion(tmp_path):
    path = write(
        tmp_path, MINIMAL.replace("  backend: transformers\n", "  backend: transformers\n  max_concurency: 4\n")
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: ")
    assert "unknown key 'teacher.max_concurency'" in message
    assert "did you mean 'max_concurrency'?" in message
    assert info.value.exit_code == 2


def test_wrong_type_names_the_key_and_line(tmp_path):
    path = write(tmp_path, MINIMAL + "harvest_extra: 1\n")
    with pytest.raises(ConfigError, match=r"distill.yaml:7: unknown key 'harvest_extra'; did you mean 'harvest'\?"):
        load_config(path)
    path = write(tmp_path, MINIMAL.replace("packs: [prompts/p]", "packs: [prompts/p]\n  temperature: hot"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert ":7: 'harvest.temperature'" in str(info.value)


def test_missing_required_key(tmp_path):
    path = write(tmp_path, "name: demo\nteacher: {backend: transformers}\nharvest: {packs: [x]}\n")
    with pytest.raises(ConfigError, match=r":2: missing required key 'teacher.model'"):
        load_config(path)


def test_unknown_filter_is_a_config_error_with_suggestion(tmp_path):
    path = write(tmp_path, MINIMAL + "filters:\n  - finished\n  - dedupe\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert ":9:" in str(info.value)
    assert "unknown filter 'dedupe'; did you mean 'dedup'?" in str(info.value)


def test_openai_backend_needs_base_url(tmp_path):
    path = write(tmp_path, MINIMAL.replace("backend: transformers", "backend: openai"))
    with pytest.raises(ConfigError, match="needs teacher.base_url"):
        load_config(path)


def test_broken_yaml_names_line(tmp_path):
    path = write(tmp_path, "name: demo\nteacher: [unclosed\n")
    with pytest.raises(ConfigError, match=r"distill.yaml:\d+: invalid YAML"):
        load_config(path)


def test_cli_renders_config_error_as_one_line_exit_2(tmp_path, capsys):
    path = write(
        tmp_path, MINIMAL.replace("  backend: transformers\n", "  backend: transformers\n  max_concurency: 4\n")
    )
    code = main(["harvest", "-c", str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    assert f"{path}:4: unknown key 'teacher.max_concurency'" in " ".join(captured.err.split())


def test_missing_config_file_exit_2(tmp_path, capsys):
    code = main(["filter", "-c", str(tmp_path / "nope.yaml")])
    assert code == 2
    assert "config file not found" in capsys.readouterr().err


def test_shipped_json_schema_is_generated_from_the_models():
    shipped = Path(__file__).resolve().parent.parent / "synthdistill" / "schemas" / "distill.schema.json"
    assert json.loads(shipped.read_text()) == config_json_schema()
    assert "teacher" in DistillConfig.model_json_schema()["properties"]


def test_shipped_configs_validate_against_the_generated_schema():
    import jsonschema
    import yaml

    repo = Path(__file__).resolve().parent.parent
    schema = json.loads((repo / "synthdistill" / "schemas" / "distill.schema.json").read_text())
    for path in sorted((repo / "synthdistill" / "data" / "examples").glob("*/distill.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "teacher": {"model": "m"}, "harvest": {"packs": []}, "filters": [3]}, schema)
