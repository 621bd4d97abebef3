"""Issue 14, point 1: what a config or pack can make a command cost is bounded (seconds, MiB).

Each case runs the real CLI in a child process and asserts its exit code, its one-line
message (file:line) and, loosely, the time and peak memory it took.
"""

from __future__ import annotations

import json

import yaml

from tests.harvest_fixtures import write_project
from tests.hostile.cli_process import run_cli
from tests.openai_server import FakeOpenAIServer

SECONDS = 20  # each refusal takes about a second; the unbounded versions ran for minutes
MIB = 600  # the unbounded versions took 10-22 GB


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each level is a list of nine aliases of the level below."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def assert_cheap(result) -> None:
    assert result.seconds < SECONDS, result.seconds
    assert result.max_rss_mib < MIB, result.max_rss_mib
    assert "Traceback" not in result.err


def test_alias_bomb_in_distill_yaml_is_refused_at_the_first_alias(tmp_path):
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    config.write_text(config.read_text() + alias_bomb())
    first_alias_line = (
        config.read_text()
        .splitlines()
        .index(next(line for line in config.read_text().splitlines() if line.startswith("a1:")))
        + 1
    )
    result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
    assert result.code == 2, result.err
    assert result.err.strip() == (
        f"error: {config}:{first_alias_line}: YAML aliases expand this file past 100000 "
        "nodes (an alias bomb?); write the values out instead of nesting aliases"
    )
    assert_cheap(result)


def test_alias_bomb_in_pack_yaml_is_refused_by_harvest_and_validate(tmp_path):
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    pack_yaml = tmp_path / "prompts" / "tiny" / "pack.yaml"
    pack_yaml.write_text(
        pack_yaml.read_text() + "extra:\n" + "".join("  " + line + "\n" for line in alias_bomb().splitlines())
    )
    for args in (("harvest", "-c", str(config)), ("packs", "validate", str(pack_yaml.parent))):
        result = run_cli(*args, cwd=tmp_path)
        assert result.code == 2, result.err
        assert f"{pack_yaml}:8: YAML aliases expand this file past 100000 nodes" in result.err + result.out
        assert_cheap(result)


def test_a_few_aliases_still_load(tmp_path):
    from synthdistill.yaml_source import load_yaml

    path = tmp_path / "small.yaml"
    path.write_text("base: &b {temperature: 0.2}\nother: *b\nlist: [*b, *b]\n")
    assert load_yaml(path).data == {
        "base": {"temperature": 0.2},
        "other": {"temperature": 0.2},
        "list": [{"temperature": 0.2}, {"temperature": 0.2}],
    }


def test_recursive_alias_is_refused(tmp_path):
    from synthdistill.errors import ConfigError
    from synthdistill.yaml_source import load_yaml

    path = tmp_path / "cycle.yaml"
    path.write_text("a: &a\n  - x\n  - *a\n")
    try:
        load_yaml(path, ConfigError)
    except ConfigError as exc:
        assert str(exc) == f"{path}:3: a YAML alias refers to the node that contains it (a cycle); write the values out"
    else:
        raise AssertionError("a cyclic alias loaded")


def _variables_pack(folder, keys: int, values: int) -> None:
    spec = {
        "name": "tiny",
        "version": "1.0.0",
        "licence": "CC0-1.0",
        "template": " ".join("{{ k" + str(k) + " }}" for k in range(keys)),
        "variables": {f"k{k}": [f"v{v}" for v in range(values)] for k in range(keys)},
    }
    (folder / "rows.jsonl").unlink()
    (folder / "pack.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def test_variables_product_over_the_maximum_is_refused_even_with_limit(tmp_path):
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    pack = tmp_path / "prompts" / "tiny"
    _variables_pack(pack, keys=8, values=10)
    line = (pack / "pack.yaml").read_text().splitlines().index("variables:") + 2  # its first value
    result = run_cli("harvest", "-c", str(config), "--limit", "3", cwd=tmp_path)
    assert result.code == 2, result.err
    assert result.err.strip() == (
        f"error: {pack / 'pack.yaml'}:{line}: `variables:` would make 100000000 prompts, "
        "over the maximum of 100000; use fewer values, or list the rows you want in a rows file"
    )
    assert_cheap(result)


def test_variables_product_under_the_maximum_is_expanded_lazily_with_limit(tmp_path):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 3)
        _variables_pack(tmp_path / "prompts" / "tiny", keys=5, values=10)  # 100,000 combinations
        result = run_cli("harvest", "-c", str(config), "--limit", "3", "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    assert json.loads(result.out)["prompts"] == 3
    assert_cheap(result)


def test_limit_stops_reading_a_50_mb_rows_file(tmp_path):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 3)
        rows = tmp_path / "prompts" / "tiny" / "rows.jsonl"
        row = json.dumps({"q": "x" * 90})
        with rows.open("w") as handle:
            for i in range(500_000):
                handle.write(row[:-2] + f'{i}"}}\n')
            handle.write("{not json\n")  # never read with --limit: the harvest succeeds
        assert rows.stat().st_size > 50_000_000
        result = run_cli("harvest", "-c", str(config), "--limit", "5", "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    assert json.loads(result.out)["prompts"] == 5
    assert result.seconds < 15, result.seconds
    assert result.max_rss_mib < 400, result.max_rss_mib


def test_prompt_over_max_prompt_chars_is_refused_at_its_row(tmp_path):
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 3, harvest={"max_prompt_chars": 100})
    rows = tmp_path / "prompts" / "tiny" / "rows.jsonl"
    rows.write_text(json.dumps({"q": "short"}) + "\n" + json.dumps({"q": "y" * 101}) + "\n")
    result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
    assert result.code == 2, result.err
    assert result.err.strip() == (
        f"error: {rows}:2: prompt is 101 characters, over harvest.max_prompt_chars (100); shorten it or raise the limit"
    )


def test_a_huge_row_line_is_refused_before_it_is_read_whole(tmp_path):
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 3, harvest={"max_prompt_chars": 100})
    rows = tmp_path / "prompts" / "tiny" / "rows.jsonl"
    rows.write_text(json.dumps({"q": "z" * 30_000_000}) + "\n")
    result = run_cli("harvest", "-c", str(config), cwd=tmp_path)
    assert result.code == 2, result.err
    assert result.err.strip() == (
        f"error: {rows}:1: line is longer than 1049776 bytes; shorten the row (or raise harvest.max_prompt_chars)"
    )
    assert_cheap(result)
