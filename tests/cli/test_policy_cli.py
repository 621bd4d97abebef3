"""`synthdistill policy ...` and the gate at the CLI: exit codes, messages, and a refusal that sends nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthdistill.cli import main
from synthdistill.shipped import shipped_dir
from synthdistill.store import HarvestStore
from tests.openai_server import FakeOpenAIServer

SHIPPED = sorted(p.stem for p in shipped_dir("policies").glob("*.yaml"))


def flat(text: str) -> str:
    """Rich wraps long lines at the terminal width: compare with whitespace collapsed."""
    return " ".join(text.split())


def run_json(capsys, argv: list[str]) -> tuple[int, dict]:
    rc = main([*argv, "--json"])
    out = capsys.readouterr().out
    return rc, json.loads(out)


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    # Run from an empty folder so that ./policies is not the shipped folder.
    monkeypatch.chdir(tmp_path)


def test_list_shows_every_shipped_policy(capsys):
    rc, data = run_json(capsys, ["policy", "list"])
    assert rc == 0
    assert [p["id"] for p in data["policies"]] == SHIPPED
    llama = next(p for p in data["policies"] if p["id"] == "llama-2")
    assert (llama["outputs_for_training"], llama["origin"], len(llama["sha256"])) == ("forbidden", "shipped", 64)
    assert main(["policy", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SHIPPED)
    assert lines[0].split()[:4] == ["alibaba-model-studio", "api-terms", "non-competing", "attest"]


def test_show_prints_clause_document_and_obligations(capsys):
    assert main(["policy", "show", "llama-3.1"]) == 0
    out = flat(capsys.readouterr().out)
    assert "llama-3.1: Llama 3.1 Community License Agreement (shipped," in out
    assert (
        "document: https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/LICENSE (version Llama 3.1 Version Release Date: July 23, 2024, retrieved 2026-12-01)"
        in out
    )
    assert "clause: §1.b.i:" in out
    assert (
        '- name-prefix: Student names must begin with "Llama" (a model distributed or made available, hosted included) '
        "[checked: name begins with 'Llama']"
    ) in out
    assert "conditions: at most 700,000,000 monthly active users" in out
    rc, data = run_json(capsys, ["policy", "show", "gemma"])
    assert (rc, data["outputs_for_training"], data["origin"]) == (0, "derivative", "shipped")
    assert [o["id"] for o in data["obligations"]] == ["use-restrictions", "terms-copy", "notice", "prohibited-use"]


def test_show_unknown_id_suggests_the_closest(capsys):
    assert main(["policy", "show", "lama-3.1"]) == 2
    assert "no policy has id 'lama-3.1'; did you mean 'llama-3.1'" in flat(capsys.readouterr().err)


def test_check_allowed_prints_decision_clause_obligations(capsys):
    assert (
        main(
            ["policy", "check", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--base-url", "http://127.0.0.1:8000/v1"]
        )
        == 0
    )
    out = flat(capsys.readouterr().out)
    assert "decision: allow-with-obligations" in out
    assert "teacher: meta-llama/Llama-3.1-8B-Instruct at 127.0.0.1" in out
    assert (
        "policy: llama-3.1 — Llama 3.1 Community License Agreement (shipped policies/llama-3.1.yaml, matched by model"
        in out
    )
    assert "clause: §1.b.i:" in out
    assert '- attribution (llama-3.1): Display "Built with Llama"' in out


def test_check_matches_by_host_and_exits_3_when_refused(capsys):
    rc, data = run_json(
        capsys, ["policy", "check", "--model", "my-fine-tune", "--base-url", "https://api.openai.com/v1"]
    )
    assert rc == 3
    assert (data["outcome"], data["policy_id"], data["matched_by"]) == ("needs-attestation", "openai-api", "host")
    rc, data = run_json(
        capsys,
        [
            "policy",
            "check",
            "--model",
            "my-fine-tune",
            "--base-url",
            "https://api.openai.com/v1",
            "--attestation",
            "The student will not compete with OpenAI",
        ],
    )
    assert (rc, data["outcome"], data["attested"]) == (0, "allow-with-obligations", True)
    rc, data = run_json(
        capsys,
        [
            "policy",
            "check",
            "--model",
            "my-fine-tune",
            "--base-url",
            "https://api.openai.com/v1",
            "--attestation",
            "x",
            "--competes",
        ],
    )
    assert (rc, data["outcome"]) == (3, "deny")


def test_check_research_use_and_unmatched_teacher(capsys):
    rc, data = run_json(capsys, ["policy", "check", "--model", "Qwen/Qwen2.5-3B-Instruct"])
    assert (rc, data["outcome"], data["policy_id"]) == (3, "deny", "qwen-research")
    rc, data = run_json(capsys, ["policy", "check", "--model", "Qwen/Qwen2.5-3B-Instruct", "--non-commercial"])
    assert (rc, data["outcome"]) == (0, "allow-with-obligations")
    assert main(["policy", "check", "--model", "acme/unknown-7b"]) == 3
    out = flat(capsys.readouterr().out)
    assert "decision: deny reason: no policy matches teacher 'acme/unknown-7b'" in out
    assert "to proceed: - add a policy file for the teacher's licence or terms to" in out


POLICY = """\
id: acme
title: ACME model licence
kind: weights-licence
applies_to: {models: ["acme/*"]}
document: {url: "https://acme.example/licence", version: "2026-01-01", retrieved: "2026-11-22"}
licence: {spdx: LicenseRef-acme, name: ACME}
outputs_for_training: allowed
clause: "§2: outputs may train any model"
obligations:
  - {id: credit, text: "Credit ACME"}
"""


def _project(tmp_path: Path, model: str, base_url: str, use: str = "", policies: dict[str, str] | None = None) -> Path:
    pack = tmp_path / "prompts" / "tiny"
    pack.mkdir(parents=True)
    (pack / "pack.yaml").write_text(
        "name: tiny\nversion: 1.0.0\nlicence: CC0-1.0\ntemplate: 'Say {{ word }}'\nvariables: {word: [apple, pear, plum]}\n"
    )
    for name, text in (policies or {}).items():
        (tmp_path / "policies").mkdir(exist_ok=True)
        (tmp_path / "policies" / name).write_text(text)
    config = tmp_path / "distill.yaml"
    config.write_text(
        f"name: t\nteacher: {{backend: openai, model: {model}, base_url: {base_url}, max_retries: 0}}\n"
        f"{use}harvest: {{packs: [prompts/tiny], max_tokens: 8, top_logprobs: 2}}\n"
    )
    return config


def test_check_with_a_config_uses_its_project_policies(tmp_path, capsys):
    config = _project(tmp_path, "acme/unknown-7b", "http://127.0.0.1:9/v1", policies={"acme.yaml": POLICY})
    rc, data = run_json(capsys, ["policy", "check", "-c", str(config)])
    assert (rc, data["outcome"], data["policy_id"], data["origin"]) == (0, "allow-with-obligations", "acme", "project")
    assert data["policy_file"] == "policies/acme.yaml"
    assert data["obligations"] == [{"id": "credit", "text": "Credit ACME", "check": None, "policy_id": "acme"}]


def test_validate_reports_file_and_line(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(POLICY)
    assert main(["policy", "validate", str(good), str(shipped_dir("policies"))]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(SHIPPED)
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("kind: weights-licence", "kind: weights"))
    assert main(["policy", "validate", str(bad)]) == 2
    assert f"{bad}:3: 'kind': Input should be 'weights-licence' or 'api-terms'" in flat(capsys.readouterr().err)


# -- the gate in `harvest` -------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "use", "expected"),
    [
        (
            "meta-llama/Llama-2-7b-chat-hf",
            "",
            "policy 'llama-2' (Llama 2 Community License Agreement) forbids using the teacher's outputs to train other models.",
        ),
        ("acme/unknown-7b", "", "no policy matches teacher 'acme/unknown-7b' at 127.0.0.1."),
        ("gpt-4o-mini", "", "policy 'openai-api' (OpenAI Services Agreement (API)) needs use.attestation"),
        (
            "Qwen/Qwen2.5-3B-Instruct",
            "use: {commercial: true}\n",
            "policy 'qwen-research' (Qwen RESEARCH LICENSE AGREEMENT (Qwen2.5 3B sizes)) allows training on the outputs for non-commercial use only",
        ),
    ],
)
def test_a_refused_harvest_exits_3_and_sends_nothing(tmp_path, capsys, model, use, expected):
    with FakeOpenAIServer() as server:
        config = _project(tmp_path, model, server.base_url, use=use)
        rc = main(["harvest", "-c", str(config)])
        stats = server.stats()
    err = flat(capsys.readouterr().err)
    assert rc == 3
    assert stats["requests"] == 0
    assert f"error: the policy gate refused teacher '{model}': {expected}" in err
    assert "Nothing was sent to the teacher. To proceed:" in err
    assert not (tmp_path / "outputs" / "t" / "harvest" / "ledger.sqlite").exists()


def test_an_allowed_harvest_records_the_decision(tmp_path, capsys):
    with FakeOpenAIServer() as server:
        config = _project(tmp_path, "acme/tiny", server.base_url, policies={"acme.yaml": POLICY})
        rc = main(["harvest", "-c", str(config), "--quiet"])
        assert server.stats()["requests"] == 3
    assert rc == 0
    harvest = tmp_path / "outputs" / "t" / "harvest"
    decision = json.loads((harvest / "decision.json").read_text())
    assert (decision["outcome"], decision["policy_id"], decision["origin"]) == (
        "allow-with-obligations",
        "acme",
        "project",
    )
    assert decision["clause"] == "§2: outputs may train any model"
    with HarvestStore(harvest / "ledger.sqlite") as store:
        records = list(store.records())
    assert [(r.policy_id, r.decision) for r in records] == [("acme", "allow-with-obligations")] * 3
