"""Nothing after the harvest escapes the gate: the answering model is gated, and the gated use travels."""

from __future__ import annotations

import json
import sqlite3

import yaml

from synthdistill.cli import main
from tests.filtered_fixtures import dropped_rows
from tests.harvest_fixtures import FAKE_POLICY, ledger_of, write_project
from tests.openai_server import FakeOpenAIServer

RESEARCH_ONLY = {**FAKE_POLICY, "commercial_use": "forbidden", "clause": "§1: outputs may be used for research only"}


def _set(config, section: str, **values) -> None:
    data = yaml.safe_load(config.read_text())
    data.setdefault(section, {}).update(values)
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def _policy(project, **changes) -> None:
    (project / "policies" / "fake.yaml").write_text(yaml.safe_dump({**FAKE_POLICY, **changes}, sort_keys=False))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([*argv])
    captured = capsys.readouterr()
    return rc, captured.out, " ".join(captured.err.split())


def _decision(project) -> dict:
    return json.loads((project / "outputs" / "run" / "harvest" / "decision.json").read_text())


# -- the answering model ----------------------------------------------------------------


def test_a_server_answering_as_a_refused_model_stops_the_harvest_and_its_answers_never_reach_a_dataset(
    tmp_path, capsys
):
    with FakeOpenAIServer(model="served-name") as server:
        config = write_project(tmp_path, server.base_url, 8, teacher={"max_concurrency": 1})
        rc, _, err = _run(capsys, "harvest", "-c", str(config), "--limit", "3")
        assert rc == 0, err
        assert [a["model"] for a in _decision(tmp_path)["answering_models"]] == ["served-name"]
        # the project's terms are tightened: the served name is no longer covered
        _policy(tmp_path, applies_to={"models": ["fake-model"], "hosts": []})
        rc, _, err = _run(capsys, "harvest", "-c", str(config))
        requests = server.stats()["requests"]
    assert rc == 3
    assert (
        "the server answered as 'served-name', not 'fake-model', and the gate refused it: no policy matches teacher "
        "'served-name' at 127.0.0.1" in err
    )
    assert "The harvest stopped; answers from that model are marked in the ledger and left out of the datasets." in err
    assert requests == 4  # the 3 of the first run, then one answer that was refused and not stored
    db = sqlite3.connect(ledger_of(tmp_path))
    assert db.execute("SELECT COUNT(*) FROM requests WHERE status = 'done'").fetchone()[0] == 3
    assert [row[0] for row in db.execute("SELECT model FROM refused_models")] == ["served-name"]
    db.close()
    refused = [a for a in _decision(tmp_path)["answering_models"] if a["outcome"] == "deny"]
    assert [a["model"] for a in refused] == ["served-name"]

    rc, _, err = _run(capsys, "filter", "-c", str(config), "--json")
    assert rc == 0, err
    report = json.loads((tmp_path / "outputs" / "run" / "filtered" / "report.json").read_text())
    assert (report["input"], report["kept"], report["refused_by_gate"]) == (3, 0, 3)
    dropped = dropped_rows(tmp_path / "outputs" / "run")
    assert {(d["filter"], d["reason"].split(": ")[0]) for d in dropped} == {("gate", "answering-model-refused")}


def test_an_answering_model_the_gate_allows_is_recorded_with_its_obligations(tmp_path, capsys):
    with FakeOpenAIServer(model="HuggingFaceTB/SmolLM2-135M-Instruct") as server:
        config = write_project(tmp_path, server.base_url, 3)
        rc, out, err = _run(capsys, "harvest", "-c", str(config))
    assert rc == 0, err
    decision = _decision(tmp_path)
    assert [(a["model"], a["outcome"], a["policy_ids"]) for a in decision["answering_models"]] == [
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "allow-with-obligations", ["smollm2"])
    ]
    assert ("smollm2", "licence-copy") in {(o["policy_id"], o["id"]) for o in decision["obligations"]}
    assert "the server answered as 'HuggingFaceTB/SmolLM2-135M-Instruct': allow-with-obligations" in " ".join(
        out.split()
    )


# -- the gated use travels ------------------------------------------------------------------


def _harvested(tmp_path, capsys, policy: dict, **use) -> object:
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 3)
        (tmp_path / "policies" / "fake.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
        _set(config, "use", **use)
        rc, _, err = _run(capsys, "harvest", "-c", str(config))
    assert rc == 0, err
    return config


def test_a_broader_use_after_the_harvest_is_refused_by_every_later_stage(tmp_path, capsys):
    config = _harvested(tmp_path, capsys, RESEARCH_ONLY, commercial=False)
    assert _decision(tmp_path)["use"]["commercial"] is False
    _set(config, "use", commercial=True)
    _set(config, "student", model="no-such-student-model", name="student")  # refused before any model loads
    for stage in ("filter", "build", "train", "eval", "audit"):
        rc, _, err = _run(capsys, stage, "-c", str(config))
        assert rc == 3, (stage, err)
        assert err.startswith(
            f"error: {stage}: the run was gated for a narrower use (use.commercial: False → True); "
            "deciding again, the gate refused: policy 'fake'"
        ), err
        assert f"The {stage} stage did nothing. To proceed:" in err
    assert not (tmp_path / "outputs" / "run" / "filtered").exists()
    assert not (tmp_path / "outputs" / "run" / "audit").exists()
    assert _decision(tmp_path)["use"]["commercial"] is False  # the recorded decision is untouched


def test_a_narrower_use_is_covered_and_provenance_records_the_gated_use(tmp_path, capsys):
    config = _harvested(tmp_path, capsys, FAKE_POLICY, commercial=True)
    _set(config, "use", commercial=False)
    assert _run(capsys, "filter", "-c", str(config))[0] == 0
    assert _run(capsys, "build", "-c", str(config))[0] == 0
    provenance = json.loads((tmp_path / "outputs" / "run" / "datasets" / "sft" / "provenance.json").read_text())
    assert provenance["use"]["commercial"] is True  # what the gate decided for, not what the config says now
    assert provenance["decision"]["use"]["commercial"] is True
    card = (tmp_path / "outputs" / "run" / "datasets" / "sft" / "README.md").read_text()
    assert "- Gated use: commercial yes, distribute student yes, competes with teacher provider no" in card


def test_a_broader_use_the_gate_allows_is_decided_again_and_recorded(tmp_path, capsys):
    config = _harvested(tmp_path, capsys, FAKE_POLICY, distribute_student=False)
    _set(config, "use", distribute_student=True)
    rc, _, err = _run(capsys, "filter", "-c", str(config))
    assert rc == 0, err
    assert _decision(tmp_path)["use"]["distribute_student"] is True


def test_a_changed_attestation_is_decided_again(tmp_path, capsys):
    attested = {**FAKE_POLICY, "requires_attestation": True}
    config = _harvested(tmp_path, capsys, attested, attestation="We only train a model for internal research use")
    _set(config, "use", attestation="yes")
    rc, _, err = _run(capsys, "filter", "-c", str(config))
    assert rc == 3
    assert "use.attestation changed" in err and "is not a statement" in err


def test_stages_after_the_harvest_refuse_a_run_the_gate_never_decided(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 3)
        assert _run(capsys, "harvest", "-c", str(config))[0] == 0
    (tmp_path / "outputs" / "run" / "harvest" / "decision.json").unlink()
    rc, _, err = _run(capsys, "filter", "-c", str(config))
    assert rc == 3
    assert "filter: no gate decision for this run" in err and "run `synthdistill harvest -c distill.yaml`" in err


def test_an_override_is_on_the_first_screen_of_the_dataset_card(tmp_path, capsys):
    forbidden = {**FAKE_POLICY, "outputs_for_training": "forbidden", "clause": "§1: no training on outputs"}
    config = _harvested_with_override(tmp_path, capsys, forbidden)
    assert _run(capsys, "filter", "-c", str(config))[0] == 0
    assert _run(capsys, "build", "-c", str(config))[0] == 0
    card = (tmp_path / "outputs" / "run" / "datasets" / "sft" / "README.md").read_text()
    body = card.split("---\n", 2)[2]
    line = (
        "- **Override**: project policy `ours` sets aside `fake` on a written permission from Fake Corp Legal "
        "(2026-11-02, reference LIC-7)"
    )
    assert body.index(line) < body.index("| split | rows |")  # before anything else the card says
    decision = _decision(tmp_path)
    assert (decision["outcome"], decision["policy_id"], decision["overrides"][0]["overridden"]) == (
        "allow",
        "ours",
        ["fake"],
    )


def _harvested_with_override(tmp_path, capsys, overridden: dict):
    ours = {
        **FAKE_POLICY,
        "id": "ours",
        "applies_to": {"models": [], "hosts": []},
        "overrides": ["fake"],
        "permission": {"granted_by": "Fake Corp Legal", "date": "2026-11-02", "reference": "LIC-7"},
        "clause": "§1: Fake Corp allows us to train on outputs",
        "clause_kind": "summary",
    }
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 3, teacher={"policy": "auto"})
        (tmp_path / "policies" / "fake.yaml").write_text(yaml.safe_dump(overridden, sort_keys=False))
        (tmp_path / "policies" / "ours.yaml").write_text(yaml.safe_dump(ours, sort_keys=False))
        rc, _, err = _run(capsys, "harvest", "-c", str(config))
    assert rc == 0, err
    return config
