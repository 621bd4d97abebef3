"""`harvest --shard i/N` and `plan --shard i/N`: a stable share of the requests by request key."""

from __future__ import annotations

import json

import pytest

from synthdistill.cli import main
from synthdistill.config import load_config
from synthdistill.errors import InputError
from synthdistill.harvest_plan import plan_requests
from synthdistill.packs import configured_prompts
from synthdistill.run_layout import RunLayout
from synthdistill.shards import Shard
from synthdistill.store import HarvestStore
from tests.harvest_fixtures import ledger_of, write_project
from tests.openai_server import FakeOpenAIServer


def _keys(config_path) -> list[str]:
    config = load_config(config_path)
    return [item.request.request_key for item in plan_requests(config, configured_prompts(config, None))]


def _ledger_keys(project) -> set[str]:
    with HarvestStore(ledger_of(project)) as store:
        return store.done_keys()


def _run(capsys, argv: list[str], expected_rc: int = 0) -> dict:
    rc = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert rc == expected_rc, captured.err
    return json.loads(captured.out)


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "1", "a/b", "1/3/2", ""])
def test_a_shard_must_be_i_of_n(text):
    with pytest.raises(InputError, match="--shard"):
        Shard.parse(text)


def test_bad_shard_on_the_command_line_exits_2_naming_the_option(tmp_path, capsys):
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 3)
    assert main(["harvest", "-c", str(config), "--shard", "4/3"]) == 2
    assert "--shard 4/3: i must be between 1 and N" in capsys.readouterr().err


def test_three_shards_take_every_request_exactly_once(tmp_path, capsys):
    n = 12
    with FakeOpenAIServer() as server:
        shards = []
        for i in (1, 2, 3):
            config = write_project(tmp_path / f"m{i}", server.base_url, n)
            summary = _run(capsys, ["harvest", "-c", str(config), "--shard", f"{i}/3"])
            assert (summary["shard"], summary["failed"]) == (f"{i}/3", 0)
            assert summary["answered"] == summary["requests_planned"] > 0
            shards.append(_ledger_keys(tmp_path / f"m{i}"))
            plan = json.loads(RunLayout(config.parent / "outputs" / "run").plan.read_text())
            assert (plan["shard"], plan["total"]["requests"]) == (f"{i}/3", len(shards[-1]))
            with HarvestStore(ledger_of(tmp_path / f"m{i}")) as store:
                assert store.last_run_summary()["shard"] == f"{i}/3"
        assert server.stats()["requests"] == n  # no request sent twice across the machines
    full = set(_keys(tmp_path / "m1" / "distill.yaml"))
    assert len(full) == n
    assert shards[0] | shards[1] | shards[2] == full
    assert sum(len(s) for s in shards) == n  # disjoint


def test_a_request_stays_in_its_shard_when_prompts_are_added_or_reordered(tmp_path):
    few = _keys(write_project(tmp_path / "few", "http://127.0.0.1:9/v1", 6))
    more = _keys(write_project(tmp_path / "more", "http://127.0.0.1:9/v1", 30))
    for i in (1, 2, 3):
        shard = Shard(i, 3)
        kept = {k for k in few if shard.has(k)}
        assert kept == {k for k in more if shard.has(k)} & set(few)
        assert kept == {k for k in reversed(few) if shard.has(k)}


def test_plan_with_a_shard_counts_only_its_share(tmp_path, capsys):
    config = write_project(tmp_path, "http://127.0.0.1:9/v1", 12)
    whole = _run(capsys, ["plan", "-c", str(config)])
    parts = [_run(capsys, ["plan", "-c", str(config), "--shard", f"{i}/3"]) for i in (1, 2, 3)]
    assert whole["shard"] is None and [p["shard"] for p in parts] == ["1/3", "2/3", "3/3"]
    assert sum(p["total"]["requests"] for p in parts) == whole["total"]["requests"] == 12
    assert main(["plan", "-c", str(config), "--shard", "2/3"]) == 0
    assert "shard 2/3" in capsys.readouterr().out
