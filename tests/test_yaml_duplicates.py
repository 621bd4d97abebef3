"""A key written twice in one YAML mapping is exit 2 naming both lines, in every YAML file the tool reads."""

from __future__ import annotations

import pytest

from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.errors import ConfigError, PackError, PolicyFileError
from synthdistill.packs.loading import load_pack
from synthdistill.policy.format import load_policy_file
from synthdistill.pricing import load_price_table
from synthdistill.yaml_source import load_yaml

CONFIG = """\
name: run
teacher:
  model: m
  base_url: http://127.0.0.1:1/v1
  model: other
harvest: {packs: [prompts/tiny]}
"""


def test_a_duplicate_key_in_distill_yaml_is_exit_2_naming_both_lines(tmp_path, capsys):
    path = tmp_path / "distill.yaml"
    path.write_text(CONFIG)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.line, caught.value.exit_code) == (5, 2)
    assert "duplicate key 'model' on lines 3 and 5" in str(caught.value)
    assert main(["filter", "-c", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}:5: duplicate key 'model' on lines 3 and 5")


def test_the_same_key_in_two_mappings_and_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("a: {x: 1}\nb: {x: 2}\nbase: &b {y: 1}\nc:\n  <<: *b\n  z: 2\n")
    assert load_yaml(path).data["c"] == {"y": 1, "z": 2}


def test_a_duplicate_key_in_a_flow_mapping_and_in_a_list_item(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("items:\n  - {k: 1, j: 2, k: 3}\n")
    with pytest.raises(ConfigError, match="duplicate key 'k' on lines 2 and 2"):
        load_yaml(path, ConfigError)


def test_a_duplicate_key_in_pack_yaml(tmp_path):
    pack = tmp_path / "p"
    pack.mkdir()
    (pack / "pack.yaml").write_text(
        "name: p\nversion: 1.0.0\nlicence: CC0-1.0\ntemplate: hi\nvariables: {x: [1]}\nlicence: MIT\n"
    )
    with pytest.raises(PackError) as caught:
        load_pack(pack)
    assert caught.value.line == 6
    assert "duplicate key 'licence' on lines 3 and 6" in str(caught.value)


def test_a_duplicate_key_in_a_policy_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("id: p\ntitle: T\nid: q\n")
    with pytest.raises(PolicyFileError) as caught:
        load_policy_file(path)
    assert caught.value.line == 3
    assert "duplicate key 'id' on lines 1 and 3" in str(caught.value)


def test_a_duplicate_key_in_pricing_yaml(tmp_path):
    (tmp_path / "pricing.yaml").write_text(
        "models:\n  - model: a\n    input_per_million: 1\n    output_per_million: 2\n    input_per_million: 3\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_price_table(tmp_path)
    assert caught.value.line == 5
    assert "duplicate key 'input_per_million' on lines 3 and 5" in str(caught.value)
