"""audit/manifest.json of a real run: artifacts, inputs, the teacher's terms, counts, versions, times."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from synthdistill import audit
from synthdistill.audit.terms import dataset_triple, licence_triple, teacher_triple
from synthdistill.errors import StageError
from synthdistill.policy import Decision
from tests.audit_fixtures import ANSWERED_AS, KEPT, QUESTIONS, TEACHER, make_run


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def audited(tmp_path):
    run = make_run(tmp_path)
    summary = audit.run(run.run_dir, run.config)
    manifest = json.loads((run.run_dir / "audit" / "manifest.json").read_text())
    return run, summary, manifest


def test_every_artifact_is_listed_with_its_sha256_and_size(audited):
    run, summary, manifest = audited
    files = sorted(
        p.relative_to(run.run_dir).as_posix()
        for p in run.run_dir.rglob("*")
        if p.is_file() and p.relative_to(run.run_dir).parts[0] != "audit"
    )
    assert [a["path"] for a in manifest["artifacts"]] == files
    assert "harvest/ledger.sqlite" in files and "datasets/sft/data/train-00000-of-00001.parquet" in files
    for entry in manifest["artifacts"]:
        path = run.run_dir / entry["path"]
        assert (entry["sha256"], entry["size"]) == (_sha(path), path.stat().st_size)
    assert summary["artifacts"] == len(files)
    assert [f["path"] for f in manifest["audit_files"]] == ["report.md", "report.html", "bom.cdx.json"]
    for entry in manifest["audit_files"]:
        assert entry["sha256"] == _sha(run.run_dir / "audit" / entry["path"])


def test_the_audit_leaves_no_sqlite_side_files(audited):
    run, _, _ = audited
    assert sorted(p.name for p in (run.run_dir / "harvest").iterdir()) == ["decision.json", "ledger.sqlite"]


def test_inputs_config_packs_and_policies_with_hashes(audited):
    run, _, manifest = audited
    inputs = manifest["inputs"]
    assert inputs["config"]["path"] == str(run.config_path)
    assert inputs["config"]["sha256"] == _sha(run.config_path)
    assert inputs["config"]["settings"]["teacher"]["model"] == TEACHER
    [pack] = inputs["packs"]
    assert (pack["name"], pack["version"], pack["licence"], pack["prompts"]) == ("audit-demo", "1.2.0", "CC-BY-4.0", 6)
    assert pack["files"]["pack.yaml"] == _sha(run.project / "prompts" / "audit-demo" / "pack.yaml")
    [policy] = inputs["policies"]
    policy_file = run.project / "policies" / "fake.yaml"
    assert policy == {
        "id": "fake-teacher",
        "path": str(policy_file),
        "origin": "project",
        "sha256": _sha(policy_file),
        "sha256_now": _sha(policy_file),
        "unchanged_since_harvest": True,
    }


def test_teacher_decision_clause_attestation_and_obligations(audited):
    _, summary, manifest = audited
    [teacher] = manifest["teachers"]
    assert (teacher["model"], teacher["models_answered"], teacher["backend"]) == (TEACHER, [ANSWERED_AS], "openai")
    assert (teacher["decision"], teacher["policy_id"], teacher["policy_origin"]) == (
        "allow-with-obligations",
        "fake-teacher",
        "project",
    )
    assert teacher["clause"] == "§2.1: Outputs may be used to train other models if they credit the Fake Teacher."
    assert teacher["attestation"] is None
    assert [(o["id"], o["text"]) for o in teacher["obligations"]] == [
        ("attribution", 'Display "Built with Fake Teacher" in the student documentation'),
        ("name-prefix", 'Distributed student names must begin with "Fake"'),
    ]
    assert teacher["licence"] == {"spdx": "LicenseRef-fake-teacher-1.0", "name": "Fake Teacher Licence 1.0"}
    assert teacher["document"]["url"] == "https://example.org/fake-teacher/LICENSE"
    assert (summary["teacher"], summary["decision"], summary["obligations"]) == (
        TEACHER,
        "allow-with-obligations",
        ["attribution", "name-prefix"],
    )


def test_counts_at_every_stage_and_drop_reasons(audited):
    _, _, manifest = audited
    assert [(s["stage"], s["count"], s["dropped"], s["reasons"]) for s in manifest["funnel"]] == [
        ("requests sent", 6, 0, {}),
        ("answered", 5, 1, {"teacher error 500": 1}),
        ("filter: finished", 3, 2, {"truncated": 2}),
        ("filter: dedup", 3, 0, {}),
        ("SFT dataset rows", KEPT, 0, {}),
    ]
    harvest = manifest["stages"]["harvest"]
    assert (harvest["requests"], harvest["answered"], harvest["failed"], harvest["prompts"]) == (
        6,
        5,
        1,
        len(QUESTIONS),
    )
    assert harvest["with_logprobs"] == 5
    assert manifest["stages"]["filter"]["drop_reasons"] == {"finished:truncated": 2}
    sft = manifest["stages"]["datasets"]["sft"]
    assert (sft["splits"], sft["rows"]) == ({"train": 2, "validation": 1}, 3)
    assert manifest["stages"]["student"] is None and manifest["stages"]["eval"] is None


def test_versions_and_timestamps(audited):
    _, _, manifest = audited
    versions = manifest["versions"]
    assert versions["tool"]["name"] == "synthdistill"
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["libraries"]["pyarrow"] and "torch" in versions["libraries"]
    times = manifest["timestamps"]
    assert times["harvest_started"] <= times["first_answer"] <= times["last_answer"] <= times["harvest_finished"]
    assert times["filtered"] and times["datasets_built"] and manifest["generated_at"]


def test_dataset_provenance_triple(audited):
    _, _, manifest = audited
    triple = manifest["stages"]["datasets"]["sft"]["provenance_triple"]
    assert (triple["use"], triple["attribution"], triple["share_alike"]) == ("commercial", 1, 0)
    assert "attribution: pack 'audit-demo' is CC-BY-4.0" in triple["because"]
    assert "attribution: obligation 'attribution' of Fake Teacher Model Licence 1.0" in triple["because"]


def test_provenance_triples_take_the_most_restrictive_source():
    assert licence_triple("CC-BY-NC-SA-4.0", "pack 'x'")["use"] == "non-commercial"
    assert licence_triple("LicenseRef-mine", "pack 'x'")["use"] == "unspecified"

    def decision(**fields) -> Decision:
        return Decision(reason="decided", use={}, teacher_model="teacher", obligations=[], **fields)

    derivative = decision(outcome="allow-with-obligations", policy_id="gemma", outputs_for_training="derivative")
    assert teacher_triple(derivative, None)["share_alike"] == 1
    research = decision(outcome="allow", policy_id="mistral-research")
    combined = dataset_triple([("a", "CC0-1.0"), ("b", "CC-BY-SA-4.0")], research, {"commercial_use": "forbidden"})
    assert (combined["use"], combined["attribution"], combined["share_alike"]) == ("non-commercial", 1, 1)
    assert dataset_triple([("a", "CC0-1.0")], decision(outcome="allow"), None)["use"] == "commercial"


def test_a_run_at_any_stage_is_audited_for_what_exists(tmp_path):
    run = make_run(tmp_path, stages=("harvest",))
    audit.run(run.run_dir, run.config)
    manifest = json.loads((run.run_dir / "audit" / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["funnel"]] == ["requests sent", "answered"]
    assert manifest["stages"]["filter"] is None and manifest["stages"]["datasets"] == {}
    assert [a["path"] for a in manifest["artifacts"]] == ["harvest/decision.json", "harvest/ledger.sqlite"]


def test_without_a_config_the_audit_reads_the_run_folder_alone(audited):
    run, _, _ = audited
    audit.run(run.run_dir)
    manifest = json.loads((run.run_dir / "audit" / "manifest.json").read_text())
    assert manifest["teachers"][0]["model"] == TEACHER and manifest["inputs"]["config"] is None
    assert [p["name"] for p in manifest["inputs"]["packs"]] == ["audit-demo"]  # from the dataset's provenance


def test_no_run_folder_is_a_stage_error(tmp_path):
    with pytest.raises(StageError, match="no run folder"):
        audit.run(tmp_path / "nothing-here")


def test_the_audit_imports_no_torch_transformers_or_datasets(audited):
    run, _, _ = audited
    code = (
        "import sys; from pathlib import Path; from synthdistill.audit import run, trace, verify_audit; "
        f"run(Path({str(run.run_dir)!r})); verify_audit(Path({str(run.run_dir)!r})); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'trl') if m in sys.modules); print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
