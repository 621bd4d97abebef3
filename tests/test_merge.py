"""`synthdistill merge`: shards' ledgers joined without duplicates, incompatible ledgers refused (exit 2)."""

from __future__ import annotations

import json
import shutil

from synthdistill.cli import main
from synthdistill.project import Project
from synthdistill.run_layout import RunLayout
from synthdistill.store import HarvestStore, LedgerReader
from tests.harvest_fixtures import ledger_of, write_project
from tests.openai_server import FakeOpenAIServer

N = 12


def _run(capsys, argv: list[str], expected_rc: int = 0) -> dict:
    rc = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert rc == expected_rc, captured.err
    return json.loads(captured.out)


def _answers(ledger) -> dict[str, str]:
    with HarvestStore(ledger) as store:
        return {record.request_key: record.text for record in store.records()}


def _run_dir(project) -> str:
    return str(project / "outputs" / "run")


def _shards(tmp_path, capsys, server, count: int = 3, **harvest) -> list:
    projects = []
    for i in range(1, count + 1):
        config = write_project(tmp_path / f"m{i}", server.base_url, N, harvest=harvest or None)
        _run(capsys, ["harvest", "-c", str(config), "--shard", f"{i}/{count}"])
        projects.append(tmp_path / f"m{i}")
    return projects


def test_merged_shards_equal_one_unsharded_harvest_and_merging_again_adds_nothing(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        whole = write_project(tmp_path / "whole", server.base_url, N)
        _run(capsys, ["harvest", "-c", str(whole)])
        projects = _shards(tmp_path, capsys, server)
    out = tmp_path / "merged"
    argv = ["merge", *(_run_dir(p) for p in projects), "-o", str(out)]
    first = _run(capsys, argv)
    expected = _answers(ledger_of(tmp_path / "whole"))
    merged = _answers(RunLayout(out).ledger)
    assert merged == expected and len(merged) == N
    assert (first["added"], first["duplicates"], first["conflicts"], first["answered"]) == (N, 0, 0, N)
    assert first["shards"] == ["1/3", "2/3", "3/3"] and first["missing_shards"] == []
    assert [i["shard"] for i in first["inputs"]] == ["1/3", "2/3", "3/3"]
    assert RunLayout(out).decision.exists()  # filter and build read the decision beside the ledger

    again = _run(capsys, argv)
    assert (again["added"], again["duplicates"], again["conflicts"], again["answered"]) == (0, N, 0, N)
    assert _answers(RunLayout(out).ledger) == expected
    with LedgerReader(RunLayout(out).ledger) as reader:
        merges = reader.merges()
    assert len(merges) == 2 and [i["run_dir"] for i in merges[0]["inputs"]] == [_run_dir(p) for p in projects]


def test_merge_into_the_first_run_folder_and_report_a_missing_shard(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        projects = _shards(tmp_path, capsys, server)
    first_keys = set(_answers(ledger_of(projects[0])))
    summary = _run(capsys, ["merge", _run_dir(projects[0]), _run_dir(projects[1])])
    held = _answers(ledger_of(projects[0]))
    assert set(held) == first_keys | set(_answers(ledger_of(projects[1])))
    assert summary["missing_shards"] == ["3/3"]
    assert summary["warnings"] == ["no input holds shard 3/3: the merged ledger lacks their requests"]
    # the Python API merges into the project's own run folder
    project = Project(projects[0] / "distill.yaml")
    data = project.merge(_run_dir(projects[2]))
    assert data["answered"] == N and data["missing_shards"] == []
    assert [i["shard"] for i in data["inputs"]] == ["1/3", "3/3"]  # the target first, with what it held
    # the audit lists the merges and their inputs
    project.audit()
    report = RunLayout(projects[0] / "outputs" / "run").report_md.read_text()
    assert "Merged from the ledgers of shards 1/3, 2/3, 3/3 (`synthdistill merge`, 2 merges; inputs below)" in report
    for shard_project, shard in ((projects[1], "2/3"), (projects[2], "3/3")):
        assert f"{_run_dir(shard_project)} | {shard}" in report


def test_a_conflicting_answer_keeps_the_first_and_is_reported(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path / "a", server.base_url, 3)
        _run(capsys, ["harvest", "-c", str(config)])
    other = tmp_path / "b" / "outputs" / "run"
    shutil.copytree(
        tmp_path / "a" / "outputs" / "run" / "harvest", other / "harvest", ignore=shutil.ignore_patterns("ledger*")
    )
    records = list(HarvestStore(ledger_of(tmp_path / "a")).records())
    with HarvestStore(RunLayout(other).ledger) as store:
        store.put_done(records[0].model_copy(update={"text": "a different answer"}))
        store.put_done(records[1])
    rc = main(["merge", _run_dir(tmp_path / "a"), str(other)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "0 answers added, 1 already held, 1 conflicts" in out
    assert f"conflict: request {records[0].request_key} answered differently in {other}" in out
    assert _answers(ledger_of(tmp_path / "a"))[records[0].request_key] == records[0].text


def test_ledgers_that_asked_different_things_are_refused_with_exit_2(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        cold = write_project(tmp_path / "cold", server.base_url, 3, harvest={"temperature": 0.2})
        hot = write_project(tmp_path / "hot", server.base_url, 3, harvest={"temperature": 0.9})
        _run(capsys, ["harvest", "-c", str(cold), "--shard", "1/2"])
        _run(capsys, ["harvest", "-c", str(hot), "--shard", "2/2"])
    before = _answers(ledger_of(tmp_path / "cold"))
    rc = main(["merge", _run_dir(tmp_path / "cold"), _run_dir(tmp_path / "hot")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"cannot merge {_run_dir(tmp_path / 'cold')} and {_run_dir(tmp_path / 'hot')}" in err
    assert "harvest digest (teacher, sampling, packs) differ" in err and "Traceback" not in err
    assert _answers(ledger_of(tmp_path / "cold")) == before  # nothing copied


def test_a_folder_without_a_ledger_is_refused_with_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["merge", str(tmp_path / "empty")]) == 2
    assert "has no harvest ledger" in capsys.readouterr().err


def test_a_ledger_from_before_the_merge_migrations_is_migrated_then_merged(tmp_path, capsys):
    import sqlite3

    with FakeOpenAIServer() as server:
        projects = _shards(tmp_path, capsys, server, count=2)
    old = ledger_of(projects[1])
    db = sqlite3.connect(old)  # the ledger as a release before m006/m007 left it
    db.executescript(
        "DROP TABLE batch_intents; DROP TABLE merges; "
        "DELETE FROM migrations WHERE name IN ('m006_batch_intents', 'm007_merges');"
    )
    db.close()
    summary = _run(capsys, ["merge", _run_dir(projects[0]), _run_dir(projects[1])])
    assert summary["answered"] == N and summary["shards"] == ["1/2", "2/2"]
    with LedgerReader(old) as reader:
        assert reader.merges() == []  # migrated: the table exists, empty


def test_the_teacher_embeddings_of_every_shard_are_merged_once(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        projects = _shards(tmp_path, capsys, server, count=2, embeddings={"batch_size": 4})
    stored = {}
    for project in projects:
        with HarvestStore(ledger_of(project)) as store:
            stored.update({(spec, e.request_key): e for spec, rows in store.embeddings_by_spec().items() for e in rows})
    assert len(stored) == N and len({spec for spec, _ in stored}) == 1  # one vector per answer, one spec

    out = tmp_path / "merged"
    argv = ["merge", *(_run_dir(p) for p in projects), "-o", str(out)]
    first = _run(capsys, argv)
    assert [i["embeddings_added"] for i in first["inputs"]] == [
        sum(spec_key[1] in _answers(ledger_of(p)) for spec_key in stored) for p in projects
    ]
    with HarvestStore(RunLayout(out).ledger) as store:
        merged = {(spec, e.request_key): e for spec, rows in store.embeddings_by_spec().items() for e in rows}
    assert merged == stored  # the same vectors, bytes and all, nothing asked again
    again = _run(capsys, argv)
    assert [i["embeddings_added"] for i in again["inputs"]] == [0, 0, 0]  # the target, then the two shards
