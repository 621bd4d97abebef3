"""The policy gate: decisions, matching, overrides, loading errors, obligations (no torch)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from synthdistill.config import DistillConfig, UseConfig
from synthdistill.errors import ConfigError, ObligationViolation, PolicyDenied, PolicyFileError
from synthdistill.policy import (
    Decision,
    decide,
    enforce_obligations,
    evaluate,
    gate,
    host_of,
    obligations_markdown,
)
from synthdistill.policy.format import (
    SCHEMA_PATH,
    LoadedPolicy,
    Policy,
    load_policies,
    load_policy_file,
    render_policy_schema,
)

COMMERCIAL = UseConfig(commercial=True, distribute_student=True)


def make_policy(**fields) -> Policy:
    base = {
        "id": "p",
        "title": "Test terms",
        "kind": "weights-licence",
        "applies_to": {"models": ["org/model-*"], "hosts": []},
        "document": {"url": "https://example.com/terms", "version": "2025-01-01", "retrieved": "2026-11-22"},
        "licence": {"spdx": "LicenseRef-test", "name": "Test"},
        "outputs_for_training": "allowed",
        "clause": "§1: test clause",
    }
    return Policy.model_validate({**base, **fields})


def loaded(policy: Policy, origin: str = "shipped", name: str | None = None) -> LoadedPolicy:
    return LoadedPolicy(policy, Path(f"/x/policies/{name or policy.id}.yaml"), "0" * 64, origin)


# -- decide: every outcome ---------------------------------------------------


def test_allowed_without_obligations_is_allow():
    verdict = decide(make_policy(), COMMERCIAL)
    assert (verdict.outcome, verdict.obligations, verdict.attested) == ("allow", [], False)
    assert verdict.reason == "policy 'p' (Test terms) allows training on the teacher's outputs"


def test_obligations_make_allow_with_obligations_and_distributing_ones_need_distribution():
    policy = make_policy(
        obligations=[
            {"id": "name-prefix", "text": "begin with X", "check": {"name_prefix": "X"}, "when": "distributing"},
            {"id": "aup", "text": "follow the AUP"},
        ]
    )
    verdict = decide(policy, COMMERCIAL)
    assert verdict.outcome == "allow-with-obligations"
    assert [o.id for o in verdict.obligations] == ["name-prefix", "aup"]
    private = decide(policy, UseConfig(distribute_student=False))
    assert [o.id for o in private.obligations] == ["aup"]
    only_distributing = make_policy(obligations=[{"id": "n", "text": "t", "when": "distributing"}])
    assert decide(only_distributing, UseConfig(distribute_student=False)).outcome == "allow"


def test_derivative_passes_terms_on():
    verdict = decide(make_policy(outputs_for_training="derivative"), COMMERCIAL)
    assert verdict.outcome == "allow-with-obligations"
    assert verdict.reason.endswith("the student is a derivative and its terms pass on")


def test_forbidden_is_deny_whatever_the_use():
    for use in (COMMERCIAL, UseConfig(commercial=False, distribute_student=False, attestation="yes")):
        verdict = decide(make_policy(outputs_for_training="forbidden"), use)
        assert verdict.outcome == "deny"
        assert verdict.reason == "policy 'p' (Test terms) forbids using the teacher's outputs to train other models"


def test_non_commercial_licence_denies_commercial_use_only():
    policy = make_policy(commercial_use="forbidden", obligations=[{"id": "research", "text": "research only"}])
    assert decide(policy, COMMERCIAL).outcome == "deny"
    assert "non-commercial use only, and use.commercial is true" in decide(policy, COMMERCIAL).reason
    assert decide(policy, UseConfig(commercial=False)).outcome == "allow-with-obligations"


def test_non_competing_denies_a_competing_student():
    policy = make_policy(outputs_for_training="non-competing")
    competing = UseConfig(competes_with_teacher_provider=True, attestation="we compete")
    assert decide(policy, competing).outcome == "deny"
    assert decide(policy, COMMERCIAL).outcome == "allow"


def test_attestation_required_until_given_then_allowed_and_recorded():
    policy = make_policy(outputs_for_training="non-competing", requires_attestation=True)
    asked = decide(policy, COMMERCIAL)
    assert asked.outcome == "needs-attestation"
    assert asked.reason == "policy 'p' (Test terms) needs use.attestation: the clause needs your judgement"
    assert decide(policy, UseConfig(attestation="   ")).outcome == "needs-attestation"
    given = decide(policy, UseConfig(attestation="The student does not compete"))
    assert (given.outcome, given.attested) == ("allow-with-obligations", True)


def test_attested_decision_carries_the_attestation_as_an_obligation():
    policy = loaded(make_policy(requires_attestation=True))
    decision = evaluate([policy], "org/model-1", [], UseConfig(attestation="we comply with the terms"))
    assert decision.outcome == "allow-with-obligations"
    assert decision.attested is True
    assert decision.attestation == "we comply with the terms"
    assert [(o.id, o.text, o.policy_id) for o in decision.obligations] == [
        ("attestation", "Outputs are used on the user's attestation: 'we comply with the terms'", "p")
    ]


def test_a_bare_yes_is_not_an_attestation():
    policy = make_policy(requires_attestation=True)
    for bare in ("yes", "ok", "I agree", "true"):
        verdict = decide(policy, UseConfig(attestation=bare))
        assert verdict.outcome == "needs-attestation", bare
        assert f"({bare!r} is not a statement: write a sentence of at least 4 words)" in verdict.reason


# -- matching --------------------------------------------------------------------


def test_host_of_base_urls():
    assert host_of("https://API.OpenAI.com/v1") == "api.openai.com"
    assert host_of("http://127.0.0.1:8000/v1") == "127.0.0.1"
    assert host_of("localhost:8000") == "localhost"


def test_host_matching_with_globs_and_url_lists():
    terms = loaded(make_policy(id="provider", kind="api-terms", applies_to={"hosts": ["*.provider.example"]}))
    hit = evaluate([terms], "any-model", ["http://127.0.0.1:8000/v1", "https://eu.provider.example/v1"], COMMERCIAL)
    assert (hit.policy_id, hit.matched_by, hit.teacher_hosts) == (
        "provider",
        "host",
        ["127.0.0.1", "eu.provider.example"],
    )
    miss = evaluate([terms], "any-model", ["http://127.0.0.1:8000/v1"], COMMERCIAL)
    assert (miss.outcome, miss.policy_id) == ("deny", None)


def test_model_globs_are_case_insensitive_and_match_the_last_segment():
    policy = loaded(make_policy(applies_to={"models": ["SmolLM2-*"]}))
    for model in ("HuggingFaceTB/SmolLM2-135M-Instruct", "/models/smollm2-360m", "smollm2-1.7b"):
        assert evaluate([policy], model, [], COMMERCIAL).policy_id == "p", model
    assert evaluate([policy], "SmolLM-135M", [], COMMERCIAL).policy_id is None


def test_the_most_specific_glob_wins():
    broad = loaded(make_policy(id="broad", applies_to={"models": ["Qwen2.5-*"]}))
    narrow = loaded(make_policy(id="narrow", applies_to={"models": ["Qwen2.5-72B*"]}, commercial_use="forbidden"))
    assert evaluate([broad, narrow], "Qwen/Qwen2.5-72B-Instruct", [], COMMERCIAL).policy_id == "narrow"
    assert evaluate([broad, narrow], "Qwen/Qwen2.5-7B-Instruct", [], COMMERCIAL).policy_id == "broad"


def test_a_project_policy_without_overrides_cannot_loosen_a_shipped_one():
    shipped = loaded(
        make_policy(id="shipped-one", applies_to={"models": ["org/model-1*"]}, outputs_for_training="forbidden")
    )
    project = loaded(make_policy(id="mine", applies_to={"models": ["*"]}), origin="project")
    decision = evaluate([project, shipped], "org/model-1", [], COMMERCIAL)
    assert (decision.outcome, decision.policy_id, decision.origin) == ("deny", "shipped-one", "shipped")
    assert [(s.policy_id, s.why) for s in decision.set_aside] == [
        ("mine", "also matches; 'shipped-one' is at least as restrictive for this use (allow vs deny)")
    ]


PERMISSION = {"granted_by": "Org Legal", "date": "2026-10-01", "reference": "contract 42"}


def test_a_project_policy_with_a_written_permission_overrides_and_says_so():
    shipped = loaded(
        make_policy(id="shipped-one", applies_to={"models": ["org/model-1*"]}, outputs_for_training="forbidden")
    )
    project = loaded(
        make_policy(id="mine", applies_to={"models": []}, overrides=["shipped-one"], permission=PERMISSION),
        origin="project",
    )
    decision = evaluate([project, shipped], "org/model-1", [], COMMERCIAL)
    assert (decision.outcome, decision.policy_id, decision.matched_by) == ("allow", "mine", "overrides")
    assert [(o.policy_id, o.overridden, o.permission["reference"]) for o in decision.overrides] == [
        ("mine", ["shipped-one"], "contract 42")
    ]
    assert [s.policy_id for s in decision.set_aside] == ["shipped-one"]
    assert "overridden by project policy 'mine' (permission from Org Legal, 2026-10-01)" in decision.set_aside[0].why
    # where the overridden policy does not match, the override does not either
    assert evaluate([project, shipped], "other/model", [], COMMERCIAL).outcome == "deny"


def test_overrides_need_a_permission():
    with pytest.raises(ValueError, match="overrides needs a permission"):
        make_policy(overrides=["x"])


def test_provider_terms_and_weights_licence_both_govern_the_most_restrictive_decides():
    weights = loaded(
        make_policy(id="weights", obligations=[{"id": "name", "text": "n", "check": {"name_prefix": "Org"}}])
    )
    terms = loaded(
        make_policy(
            id="terms",
            kind="api-terms",
            applies_to={"hosts": ["api.org.example"]},
            outputs_for_training="non-competing",
            requires_attestation=True,
        )
    )
    refused = evaluate([weights, terms], "org/model-1", ["https://api.org.example/v1"], COMMERCIAL)
    assert (refused.outcome, refused.policy_id) == ("needs-attestation", "terms")
    assert [(g.policy_id, g.outcome, g.matched_by) for g in refused.also_governed_by] == [
        ("weights", "allow-with-obligations", "model")
    ]
    attested = evaluate(
        [weights, terms],
        "org/model-1",
        ["https://api.org.example/v1"],
        UseConfig(attestation="The student does not compete"),
    )
    assert attested.outcome == "allow-with-obligations"
    assert [(o.policy_id, o.id) for o in attested.obligations] == [("weights", "name"), ("terms", "attestation")]


def test_an_explicit_policy_id_may_only_choose_among_matching_policies():
    policy = loaded(make_policy(id="chosen", applies_to={"models": ["org/model-*"]}))
    decision = evaluate([policy], "org/model-1", [], COMMERCIAL, policy_choice="chosen")
    assert (decision.policy_id, decision.matched_by, decision.outcome) == ("chosen", "policy-id", "allow")
    with pytest.raises(ConfigError, match=r"teacher.policy: no policy has id 'chosn'; did you mean 'chosen'\?"):
        evaluate([policy], "org/model-1", [], COMMERCIAL, policy_choice="chosn")
    with pytest.raises(
        ConfigError,
        match=r"teacher.policy: policy 'chosen' does not match teacher 'anything' "
        r"\(policies that match it: none\)",
    ):
        evaluate([policy], "anything", [], COMMERCIAL, policy_choice="chosen")


def test_an_explicit_policy_id_cannot_set_a_stricter_one_aside():
    loose = loaded(make_policy(id="loose", applies_to={"models": ["model-*"]}))
    strict = loaded(make_policy(id="strict", applies_to={"models": ["model-3b*"]}, commercial_use="forbidden"))
    with pytest.raises(
        ConfigError,
        match=r"teacher.policy: 'loose' would set aside 'strict', which also governs "
        r"teacher 'org/model-3b' and is more restrictive for this use \(allow vs deny\)",
    ):
        evaluate([loose, strict], "org/model-3b", [], COMMERCIAL, policy_choice="loose")
    chosen = evaluate([loose, strict], "org/model-3b", [], UseConfig(commercial=False), policy_choice="loose")
    assert (chosen.policy_id, chosen.outcome) == ("loose", "allow")  # as restrictive for research: a free choice


def test_no_matching_policy_is_refused_with_ways_forward():
    decision = evaluate([], "mystery-model", ["http://10.0.0.1/v1"], COMMERCIAL, project_hint="/proj/policies")
    assert decision.outcome == "deny"
    assert decision.reason == "no policy matches teacher 'mystery-model' at 10.0.0.1"
    assert decision.how_to_proceed[0].startswith(
        "add a policy file for the teacher's licence or terms to /proj/policies"
    )
    assert decision.how_to_proceed[1].startswith("then declare your `use`")


# -- loading: project overrides, validation errors ----------------------------------


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


SMOLLM2_OVERRIDE = """\
id: smollm2
title: SmolLM2 (our own reading)
kind: weights-licence
applies_to: {models: ["SmolLM2-*"]}
document: {url: "https://example.com/ours", version: "2026-01-01", retrieved: "2026-11-22"}
licence: {spdx: Apache-2.0, name: Apache License 2.0}
outputs_for_training: allowed
clause: "our clause"
"""


def test_project_policies_override_and_add_to_the_shipped_ones(tmp_path):
    override = _write(tmp_path / "policies", "smollm2.yaml", SMOLLM2_OVERRIDE)
    _write(
        tmp_path / "policies",
        "extra.yml",
        SMOLLM2_OVERRIDE.replace("id: smollm2", "id: extra").replace("SmolLM2-*", "extra-*"),
    )
    policies = load_policies(tmp_path)
    ids = [p.id for p in policies]
    assert ids[:2] == ["extra", "smollm2"] and ids.count("smollm2") == 1
    assert "llama-3.1" in ids
    decision = evaluate(policies, "HuggingFaceTB/SmolLM2-135M-Instruct", [], COMMERCIAL)
    assert (decision.policy_id, decision.origin, decision.policy_file) == (
        "smollm2",
        "project",
        "policies/smollm2.yaml",
    )
    assert decision.policy_sha256 == hashlib.sha256(override.read_bytes()).hexdigest()
    assert decision.clause == "our clause" and decision.outcome == "allow"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (SMOLLM2_OVERRIDE + "note: typo\n", 9, "unknown key 'note'; did you mean 'notes'?"),
        (
            SMOLLM2_OVERRIDE.replace("outputs_for_training: allowed", "outputs_for_training: maybe"),
            7,
            "'outputs_for_training': Input should be 'allowed', 'non-competing', 'derivative' or 'forbidden'",
        ),
        (SMOLLM2_OVERRIDE.replace('retrieved: "2026-11-22"', 'retrieved: "last week"'), 5, "'document.retrieved'"),
        (SMOLLM2_OVERRIDE.replace("kind: weights-licence\n", ""), 1, "missing required key 'kind'"),
        (SMOLLM2_OVERRIDE.replace('clause: "our clause"', "clause: [unclosed"), 9, "invalid YAML"),
        (
            SMOLLM2_OVERRIDE + "obligations:\n  - {id: a, text: x}\n  - {id: a, text: y}\n",
            10,
            "obligation id 'a' appears twice",
        ),
    ],
)
def test_policy_file_errors_name_file_and_line(tmp_path, text, line, message):
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(PolicyFileError) as caught:
        load_policy_file(path)
    assert caught.value.file == str(path)
    assert caught.value.line == line
    assert message in caught.value.message
    assert caught.value.exit_code == 2


def test_duplicate_ids_in_one_folder_are_an_error(tmp_path):
    _write(tmp_path / "policies", "a.yaml", SMOLLM2_OVERRIDE)
    second = _write(tmp_path / "policies", "b.yaml", SMOLLM2_OVERRIDE)
    with pytest.raises(PolicyFileError) as caught:
        load_policies(tmp_path)
    assert str(caught.value) == f"{second}:1: policy id 'smollm2' is also used by a.yaml in the same folder"


def test_a_broken_project_policy_stops_the_gate_with_exit_2(tmp_path):
    _write(tmp_path / "policies", "broken.yaml", "id: [\n")
    with pytest.raises(PolicyFileError, match=r"broken.yaml:\d+: invalid YAML"):
        gate(_config(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct"))


def test_shipped_schema_is_generated_from_the_models():
    assert SCHEMA_PATH.read_text() == render_policy_schema()
    assert json.loads(SCHEMA_PATH.read_text())["properties"]["outputs_for_training"]["enum"] == [
        "allowed",
        "non-competing",
        "derivative",
        "forbidden",
    ]


# -- the gate --------------------------------------------------------------------------


def _config(
    tmp_path: Path, model: str, use: dict | None = None, policy: str = "auto", student: dict | None = None
) -> DistillConfig:
    data = {
        "name": "t",
        "teacher": {"backend": "openai", "model": model, "base_url": "http://127.0.0.1:9/v1", "policy": policy},
        "use": use or {},
        "harvest": {"packs": ["prompts/none"]},
    }
    if student:
        data["student"] = student
    path = tmp_path / "distill.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    from synthdistill.config import load_config

    return load_config(path)


def test_gate_returns_the_decision_when_allowed(tmp_path):
    decision = gate(_config(tmp_path, "meta-llama/Llama-3.1-8B-Instruct", student={"model": "m", "name": "tiny"}))
    assert isinstance(decision, Decision)
    assert (decision.outcome, decision.policy_id, decision.origin) == ("allow-with-obligations", "llama-3.1", "shipped")
    assert decision.licence == {"spdx": "LicenseRef-llama3.1-community", "name": "Llama 3.1 Community License"}
    assert decision.document["version"] == "Llama 3.1 Version Release Date: July 23, 2024"
    assert decision.teacher_host == "127.0.0.1"
    assert decision.warnings == [
        "student name 'tiny' must begin with 'Llama': policy 'llama-3.1' obliges it "
        '(Student names must begin with "Llama" (a model distributed or made available, hosted included)); `train` will refuse it'
    ]


def test_gate_refuses_with_reason_and_ways_forward(tmp_path):
    with pytest.raises(PolicyDenied) as caught:
        gate(_config(tmp_path, "gpt-4o-mini", policy="openai-api"))
    text = str(caught.value)
    assert caught.value.exit_code == 3
    assert text.startswith(
        "the policy gate refused teacher 'gpt-4o-mini': policy 'openai-api' (OpenAI Services Agreement (API)) "
        "needs use.attestation: the clause needs your judgement."
    )
    assert "Nothing was sent to the teacher. To proceed:" in text
    assert (
        'set use.attestation in distill.yaml to "The student will not compete with OpenAI\'s products or services"'
        in text
    )
    attested = gate(
        _config(tmp_path, "gpt-4o-mini", use={"attestation": "The student is not competing"}, policy="openai-api")
    )
    assert (attested.outcome, attested.attested) == ("allow-with-obligations", True)


def test_gate_names_the_config_line_of_an_unknown_policy_id(tmp_path):
    config = _config(tmp_path, "m", policy="lama-3.1")
    with pytest.raises(ConfigError) as caught:
        gate(config)
    assert caught.value.file == str(config.path)
    assert caught.value.line == 1
    assert "no policy has id 'lama-3.1'; did you mean 'llama-3.1'" in caught.value.message


# -- obligations: enforcement and cards ------------------------------------------------


def _llama_decision(tmp_path: Path, **use) -> Decision:
    return gate(_config(tmp_path, "meta-llama/Llama-3.1-8B-Instruct", use=use))


def test_enforce_name_prefix(tmp_path):
    decision = _llama_decision(tmp_path)
    enforce_obligations(decision, "Llama-3.1-tiny-student")
    enforce_obligations(decision, "my-org/Llama-tiny")
    with pytest.raises(ObligationViolation) as caught:
        enforce_obligations(decision, "tiny-student")
    assert caught.value.exit_code == 3
    assert str(caught.value) == (
        "student name 'tiny-student' must begin with 'Llama': policy 'llama-3.1' obliges it "
        '(Student names must begin with "Llama" (a model distributed or made available, hosted included)). Rename the student (student.name in distill.yaml) and train again.'
    )
    with pytest.raises(ObligationViolation, match="set student.name"):
        enforce_obligations(decision, None)
    with pytest.raises(ObligationViolation):
        enforce_obligations(decision, "llama-lowercase")  # the licence says "Llama"


def test_made_available_duties_bind_an_undistributed_student_too(tmp_path):
    # Llama 3.1 §1.b.i binds a model "distributed or made available": a hosted student is made available.
    decision = _llama_decision(tmp_path, distribute_student=False)
    assert {"name-prefix", "attribution"} <= {o.id for o in decision.obligations}
    assert "licence-copy" not in {o.id for o in decision.obligations}  # shipping the licence binds distribution only
    with pytest.raises(ObligationViolation):
        enforce_obligations(decision, "tiny-student")


def test_obligations_markdown_for_cards(tmp_path):
    text = obligations_markdown(_llama_decision(tmp_path, attestation="research lab use"))
    assert text.startswith("## Teacher terms\n\n- Teacher: `meta-llama/Llama-3.1-8B-Instruct` at 127.0.0.1\n")
    assert (
        "- Policy: `llama-3.1` — Llama 3.1 Community License Agreement (shipped file policies/llama-3.1.yaml, sha256 "
        in text
    )
    assert "- Decision: **allow-with-obligations**" in text
    assert (
        "- Document: https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/LICENSE (version Llama 3.1 Version Release Date: July 23, 2024, retrieved 2026-12-01)"
        in text
    )
    assert "- Condition: max monthly active users = 700,000,000" in text
    assert '- Attestation: "research lab use"' in text
    assert (
        '- **name-prefix** (llama-3.1): Student names must begin with "Llama" (a model distributed or made available, hosted included) (checked: name begins with "Llama")'
        in text
    )
    assert text.count("\n- **") == 4
    bare = Decision(outcome="allow", reason="r", use={}, teacher_model="m")
    assert obligations_markdown(bare).endswith("### Obligations\n\nNone pass on to this dataset or model.\n")
