"""Each hole a compliance review found in the gate (issue 13), as `synthdistill --json policy check` shows it."""

from __future__ import annotations

import json
import textwrap

import pytest

from synthdistill.cli import main


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ./policies is not the shipped folder


def check(capsys, *argv: str) -> tuple[int, dict]:
    """(exit code, the decision; or the error object `--json` prints for bad input)."""
    rc = main(["--json", "policy", "check", *argv])
    return rc, json.loads(capsys.readouterr().out)


def governing(decision: dict) -> set[str]:
    return {decision["policy_id"], *(g["policy_id"] for g in decision["also_governed_by"])} - {None}


@pytest.mark.parametrize(
    "model",
    [
        "Qwen/Qwen2.5-Coder-3B-Instruct",
        "qwen2.5-coder:3b",
        "Qwen/Qwen2.5-3B-Instruct",
        "bartowski/Qwen2.5-Coder-3B-Instruct-GGUF",
        "  QWEN/qwen2.5-math-3b  ",
    ],
)
def test_qwen_3b_sizes_are_research_only_however_spelt(capsys, model):
    rc, decision = check(capsys, "--model", model)
    assert (rc, decision["outcome"], decision["policy_id"]) == (3, "deny", "qwen-research")
    rc, research = check(capsys, "--model", model, "--non-commercial")
    assert (rc, research["policy_id"]) == (0, "qwen-research")


@pytest.mark.parametrize("model", ["Qwen/Qwen2.5-72B-Instruct", "qwen2.5:72b", "Qwen/Qwen2.5-Math-72B-Instruct"])
def test_qwen_72b_sizes_are_under_the_qwen_licence(capsys, model):
    rc, decision = check(capsys, "--model", model)
    assert decision["policy_id"] == "qwen-license"


def test_codestral_local_weights_are_not_governed_by_the_api_terms(capsys):
    rc, decision = check(capsys, "--model", "mistralai/Codestral-22B-v0.1")
    assert rc == 3
    assert "mistral-api" not in governing(decision)
    assert decision["licence"]["name"].startswith("Mistral AI Non-Production License")
    rc, served = check(capsys, "--model", "mistralai/Codestral-22B-v0.1", "--base-url", "http://127.0.0.1:8000/v1")
    assert rc == 3 and "mistral-api" not in governing(served)


def test_qwen3_max_is_an_api_model_not_apache_weights(capsys):
    for argv in (
        ["--model", "qwen3-max"],
        ["--model", "qwen3-max", "--base-url", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"],
    ):
        rc, decision = check(capsys, *argv)
        assert "qwen-apache" not in governing(decision), argv
        assert decision["policy_kind"] == "api-terms", argv
        assert decision["outcome"] != "allow-with-obligations" or decision["attested"], argv


def test_claude_at_anthropic_is_refused_whatever_the_student(capsys):
    rc, decision = check(
        capsys,
        "--model",
        "claude-sonnet-4-5",
        "--base-url",
        "https://api.anthropic.com/v1",
        "--not-competing",
        "--attestation",
        "The student does not compete with Anthropic at all",
    )
    assert (rc, decision["outcome"], decision["policy_id"]) == (3, "deny", "anthropic-commercial")
    assert "authorization" in decision["clause"].lower() or "permission" in decision["clause"].lower()


@pytest.mark.parametrize(
    ("model", "url"),
    [
        ("claude-sonnet-4-5", "https://api.anthropic.com/v1"),
        ("meta-llama/Llama-2-7b-chat-hf", None),
    ],
)
def test_a_policy_id_that_does_not_match_the_teacher_is_bad_input(capsys, model, url):
    argv = ["--model", model, "--policy", "smollm2", *(["--base-url", url] if url else [])]
    rc, out = check(capsys, *argv)
    assert (rc, out["error"]["type"], out["error"]["exit_code"]) == (2, "ConfigError", 2)
    assert "teacher.policy: policy 'smollm2' does not match teacher" in out["error"]["message"]


def test_a_path_cannot_hide_a_restricted_model_behind_a_permitted_one(capsys):
    for model in (
        "HuggingFaceTB/SmolLM2-135M/meta-llama/Llama-2-7b-chat-hf",
        "meta-llama/Llama-2-7b-chat-hf/HuggingFaceTB/SmolLM2-135M",
    ):
        rc, decision = check(capsys, "--model", model)
        assert (rc, decision["outcome"], decision["policy_id"]) == (3, "deny", "llama-2"), model


@pytest.mark.parametrize(
    ("url", "policy"),
    [
        ("https://claude.ai./api", "anthropic-consumer"),
        ("https://api.claude.ai/v1", "anthropic-consumer"),
        ("https://CHATGPT.com.:443/backend-api", "openai-terms-of-use"),
        ("https://user:pw@chatgpt.com/backend-api", "openai-terms-of-use"),
    ],
)
def test_a_host_spelt_otherwise_keeps_its_providers_terms(capsys, url, policy):
    rc, decision = check(capsys, "--model", "some-chat-model", "--base-url", url)
    assert rc == 3
    assert policy in governing(decision)


@pytest.mark.parametrize(
    ("model", "policy"),
    [
        ("openai/gpt-oss-20b", "gpt-oss"),
        ("gpt-oss:120b", "gpt-oss"),
        ("moonshotai/Kimi-K2-Instruct", "kimi-k2"),
        ("zai-org/GLM-4.5", "glm-4.5"),
        ("meta-llama/Llama-3.2-3B-Instruct", "llama-3.2"),
    ],
)
def test_teachers_users_distil_from_every_day_are_known(capsys, model, policy):
    rc, decision = check(capsys, "--model", model)
    assert decision["policy_id"] == policy
    assert decision["outcome"] in ("allow", "allow-with-obligations")


def test_llama_3_2_states_the_eu_multimodal_condition(capsys):
    rc, decision = check(capsys, "--model", "meta-llama/Llama-3.2-11B-Vision-Instruct")
    assert any("EU" in c or "European Union" in c for c in decision["conditions"].get("stated", []))


PERMISSION_POLICY = textwrap.dedent("""\
    id: anthropic-written-permission
    title: Written authorisation from Anthropic to distil
    kind: api-terms
    overrides: [anthropic-commercial]
    permission: {granted_by: "Anthropic, Inc. (legal@)", date: 2026-11-02, reference: "DPA-2026-117"}
    document: {url: "https://example.com/our-contract", version: "2026-11-02", retrieved: "2026-11-30"}
    licence: {spdx: "LicenseRef-our-contract", name: "Our agreement with Anthropic"}
    outputs_for_training: allowed
    clause_kind: summary
    clause: "Anthropic authorises training the named student on outputs of its API."
""")


def test_a_written_permission_overrides_and_the_decision_shows_it(capsys, tmp_path):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "permission.yaml").write_text(PERMISSION_POLICY)
    rc, decision = check(capsys, "--model", "claude-sonnet-4-5", "--base-url", "https://api.anthropic.com/v1")
    assert (rc, decision["outcome"], decision["policy_id"]) == (0, "allow", "anthropic-written-permission")
    assert decision["overrides"] == [
        {
            "policy_id": "anthropic-written-permission",
            "overridden": ["anthropic-commercial"],
            "permission": {
                "granted_by": "Anthropic, Inc. (legal@)",
                "date": "2026-11-02",
                "reference": "DPA-2026-117",
                "scope": "",
            },
            "policy_file": "policies/permission.yaml",
            "policy_sha256": decision["overrides"][0]["policy_sha256"],
        }
    ]
    rc = main(["policy", "check", "--model", "claude-sonnet-4-5", "--base-url", "https://api.anthropic.com/v1"])
    text = " ".join(capsys.readouterr().out.split())
    assert rc == 0
    assert text.index("override:") < text.index("decision:")  # on the first screen, before everything else
    assert (
        "sets aside anthropic-commercial on a written permission from Anthropic, Inc. (legal@) (2026-11-02, DPA-2026-117)"
        in text
    )


def test_the_audit_and_train_judge_the_student_name_by_one_rule():
    from synthdistill.audit.report_sections import obligations_section
    from synthdistill.policy import Decision, obligation_problems

    obligation = {
        "id": "name-prefix",
        "text": 'Names begin with "Llama"',
        "check": {"name_prefix": "Llama"},
        "policy_id": "llama-3.1",
    }
    decision = Decision(
        outcome="allow-with-obligations", reason="r", use={}, teacher_model="m", obligations=[obligation]
    )
    for name, kept in (("my-org/Llama-tiny", True), ("Llama-tiny", True), ("tiny-Llama", False), ("llama-tiny", False)):
        assert (obligation_problems(decision, name) == []) is kept, name
        table = obligations_section({"obligations": [obligation]}, name)[1]
        assert table.rows[0][3].endswith(f"student '{name}' keeps it" if kept else f"student '{name}' BREAKS it"), name


def test_the_audit_shows_an_override_first(tmp_path):
    from synthdistill.audit.report_sections import headline

    override = {
        "policy_id": "ours",
        "overridden": ["anthropic-commercial"],
        "policy_file": "policies/ours.yaml",
        "policy_sha256": "0" * 64,
        "permission": {"granted_by": "Anthropic", "date": "2026-11-02", "reference": "DPA-1"},
    }
    rows = headline({"teachers": [{"model": "claude-x", "decision": "allow", "overrides": [override]}]})
    assert [r[0] for r in rows][:3] == ["Teacher", "Override", "Terms"]
    assert rows[1][1] == (
        "project policy ours sets aside anthropic-commercial on a written permission from Anthropic "
        "(2026-11-02, reference DPA-1)"
    )
