"""Every shipped policy: valid, complete, matched by its teachers, and deciding as /work/shared/licences.md says.

COMMERCIAL = use.commercial and use.distribute_student; RESEARCH = use.commercial false.
Abbreviations: AWO allow-with-obligations, ATTEST needs-attestation.
"""

from __future__ import annotations

import pytest

from synthdistill.config import UseConfig, load_config
from synthdistill.policy import evaluate, gate
from synthdistill.policy.format import AppliesTo, LoadedPolicy, load_policies, load_policy_folder
from synthdistill.shipped import shipped_dir

AWO, ATTEST, DENY, ALLOW = "allow-with-obligations", "needs-attestation", "deny", "allow"
COMMERCIAL = UseConfig(commercial=True, distribute_student=True)
RESEARCH = UseConfig(commercial=False)

# policy id: (a teacher it governs: model, base URL or None), commercial outcome, research outcome — licences.md row
EXPECTED = {
    "openai-api": (("gpt-4o-mini", "https://api.openai.com/v1"), ATTEST, ATTEST),  # non-competing, attestation
    "openai-terms-of-use": (("chat-model", "https://chatgpt.com/backend-api"), ATTEST, ATTEST),  # same "compete" ban
    # Usage Policy: no "model distillation" without prior authorization, whatever the student does
    "anthropic-commercial": (("claude-sonnet-4-5", "https://api.anthropic.com/v1"), DENY, DENY),
    "anthropic-consumer": (("chat-model", "https://claude.ai/api"), DENY, DENY),  # forbidden: no training of any model
    "gemini-api": (("gemini-2.5-flash", "https://generativelanguage.googleapis.com/v1beta/openai"), ATTEST, ATTEST),
    "mistral-api": (("mistral-large-latest", "https://api.mistral.ai/v1"), AWO, AWO),  # allowed for text
    "mistral-apache": (("mistralai/Mistral-7B-Instruct-v0.3", None), AWO, AWO),  # allowed; licence + NOTICE
    "mistral-research": (("mistralai/Mistral-Large-Instruct-2407", None), DENY, AWO),  # research only
    "mistral-mnpl": (("mistralai/Codestral-22B-v0.1", None), DENY, ATTEST),  # non-production only, unverified text
    "llama-3.1": (("meta-llama/Llama-3.1-8B-Instruct", None), AWO, AWO),  # allowed; "Llama" name prefix
    "llama-3.2": (("meta-llama/Llama-3.2-3B-Instruct", None), AWO, AWO),  # as 3.1, plus the EU multimodal condition
    "llama-3.3": (("meta-llama/Llama-3.3-70B-Instruct", None), AWO, AWO),
    "llama-4": (("meta-llama/Llama-4-Scout-17B-16E-Instruct", None), AWO, AWO),
    "llama-2": (("meta-llama/Llama-2-7b-chat-hf", None), DENY, DENY),  # §1.b.v forbidden
    "llama-3": (("meta-llama/Meta-Llama-3-8B-Instruct", None), DENY, DENY),  # §1.b.v forbidden
    "meta-llama-api": (("cerebras-fast", "https://api.llama.com/compat/v1"), ATTEST, ATTEST),  # non-competing
    "gemma": (("google/gemma-3-4b-it", None), AWO, AWO),  # derivative
    "gemma-4": (("google/gemma-4-9b-it", None), AWO, AWO),  # Apache-2.0 since 2026-04-01
    "qwen-apache": (("Qwen/Qwen2.5-7B-Instruct", None), AWO, AWO),  # allowed; keep licence
    "qwen-license": (("Qwen/Qwen2.5-72B-Instruct", None), ATTEST, ATTEST),  # allowed, text unverified
    "qwen-research": (("Qwen/Qwen2.5-3B-Instruct", None), DENY, AWO),  # non-commercial only
    "tongyi-qianwen": (("Qwen/Qwen-7B-Chat", None), DENY, DENY),  # §5(b) forbidden
    "qwen-chat": (("chat-model", "https://chat.qwen.ai/api"), DENY, DENY),  # distilling banned
    "alibaba-model-studio": (("qwen3-max", None), ATTEST, ATTEST),  # API-only Qwen names; terms unverified
    "deepseek-r1": (("deepseek-ai/DeepSeek-R1", None), AWO, AWO),  # MIT, distillation permitted
    "deepseek-v3": (("deepseek-ai/DeepSeek-V3", None), AWO, AWO),  # derivative
    "deepseek-v3-mit": (("deepseek-ai/DeepSeek-V3-0324", None), AWO, AWO),  # V3-0324 and later: MIT
    "deepseek-api": (("deepseek-chat", "https://api.deepseek.com/v1"), AWO, AWO),  # allowed; no marks
    "phi": (("microsoft/Phi-3-mini-4k-instruct", None), AWO, AWO),  # MIT
    "nvidia-open-model": (("nvidia/Nemotron-4-340B-Instruct", None), ALLOW, ALLOW),  # output is not a derivative
    "nvidia-nemotron-open": (None, ATTEST, ATTEST),  # text unverified; matches nothing until a project names a model
    "falcon-apache": (("tiiuae/falcon-7b-instruct", None), AWO, AWO),
    "falcon-2-11b": (("tiiuae/falcon-11B", None), ATTEST, ATTEST),  # output clause unverified
    "falcon-tii-2": (("tiiuae/Falcon3-7B-Instruct", None), ATTEST, ATTEST),  # output clause unverified
    "falcon-h1": (("tiiuae/Falcon-H1-7B-Instruct", None), ATTEST, ATTEST),  # output clause unverified
    "olmo": (("allenai/OLMo-2-1124-7B-Instruct", None), AWO, AWO),
    "smollm2": (("HuggingFaceTB/SmolLM2-135M-Instruct", None), AWO, AWO),  # the embedded teacher
    "gpt-oss": (("openai/gpt-oss-20b", None), AWO, AWO),  # Apache-2.0
    "kimi-k2": (("moonshotai/Kimi-K2-Instruct", None), AWO, AWO),  # modified MIT
    "glm-4.5": (("zai-org/GLM-4.5", None), AWO, AWO),  # MIT
    # routes and clouds: their terms apply on top of the model's licence (unverified: attestation)
    "openrouter": (("qwen/qwen3-8b", "https://openrouter.ai/api/v1"), ATTEST, ATTEST),
    "together-ai": (("meta-llama/Llama-3.3-70B-Instruct-Turbo", "https://api.together.xyz/v1"), ATTEST, ATTEST),
    "fireworks-ai": (
        ("accounts/fireworks/models/llama-v3p1-8b-instruct", "https://api.fireworks.ai/inference/v1"),
        ATTEST,
        ATTEST,
    ),
    "groq": (("llama-3.1-8b-instant", "https://api.groq.com/openai/v1"), ATTEST, ATTEST),
    "amazon-bedrock": (
        ("meta.llama3-1-8b-instruct-v1:0", "https://bedrock-runtime.us-east-1.amazonaws.com"),
        ATTEST,
        ATTEST,
    ),
    "google-vertex-ai": (
        (
            "meta/llama-3.1-405b-instruct-maas",
            "https://us-central1-aiplatform.googleapis.com/v1beta1/projects/p/locations/us-central1/endpoints/openapi",
        ),
        ATTEST,
        ATTEST,
    ),
    "azure-openai": (("Phi-4", "https://my-project.services.ai.azure.com/models"), ATTEST, ATTEST),
}
UNVERIFIED = {"qwen-license", "falcon-tii-2", "nvidia-nemotron-open", "gemini-api"}


@pytest.fixture(scope="module")
def shipped():
    return load_policies(None)


def test_one_policy_per_row_and_all_valid(shipped):
    assert len(shipped) >= 20
    assert sorted(p.id for p in shipped) == sorted(EXPECTED)
    assert {p.path.stem for p in shipped} == set(EXPECTED)  # file name = id
    assert all(p.origin == "shipped" for p in shipped)


def test_each_policy_records_its_document_clause_and_attestation(shipped):
    for loaded in shipped:
        policy = loaded.policy
        assert policy.document.url.startswith("https://"), policy.id
        assert policy.document.version and policy.document.retrieved in ("2026-11-22", "2026-12-01"), policy.id
        assert 10 <= len(policy.clause) <= 500, policy.id
        if policy.outputs_for_training == "non-competing":
            assert policy.requires_attestation and policy.attestation_hint, policy.id
    for policy_id in UNVERIFIED:
        loaded = next(p for p in shipped if p.id == policy_id)
        assert loaded.policy.requires_attestation and "unverified" in loaded.policy.notes.lower(), policy_id


def _decide(shipped, policy_id: str, use: UseConfig):
    teacher = EXPECTED[policy_id][0]
    if teacher is None:  # a project's copy of the policy names its model (same id: it replaces the shipped one)
        loaded = next(p for p in shipped if p.id == policy_id)
        named = loaded.policy.model_copy(update={"applies_to": AppliesTo(models=["nvidia/some-model"])})
        copy = LoadedPolicy(named, loaded.path, loaded.sha256, "project")
        return evaluate([copy, *(p for p in shipped if p.id != policy_id)], "nvidia/some-model", [], use)
    model, url = teacher
    return evaluate(shipped, model, [url] if url else [], use)


@pytest.mark.parametrize("policy_id", sorted(EXPECTED))
def test_decision_for_commercial_and_research_use(shipped, policy_id):
    _, commercial, research = EXPECTED[policy_id]
    for use, expected in ((COMMERCIAL, commercial), (RESEARCH, research)):
        decision = _decide(shipped, policy_id, use)
        assert (decision.policy_id, decision.outcome) == (policy_id, expected), use
        assert decision.clause and decision.document["url"]
    if commercial == ATTEST:
        attested = _decide(shipped, policy_id, UseConfig(attestation="I have read the terms and comply"))
        assert (attested.outcome, attested.attested) == (AWO, True)


def test_obligations_that_licences_md_lists(shipped):
    llama = _decide(shipped, "llama-3.1", COMMERCIAL)
    assert [o.check for o in llama.obligations if o.check] == [{"name_prefix": "Llama"}]
    assert llama.conditions == {"max_monthly_active_users": 700_000_000}
    gemma = _decide(shipped, "gemma", COMMERCIAL)
    assert any("Gemma is provided under and subject to the Gemma Terms of Use" in o.text for o in gemma.obligations)
    qwen = _decide(shipped, "qwen-license", UseConfig(attestation="We have read the Qwen licence and comply"))
    assert any("Built with Qwen" in o.text for o in qwen.obligations)
    assert qwen.conditions == {"max_monthly_active_users": 100_000_000}
    assert "logprobs" in next(p for p in shipped if p.id == "anthropic-commercial").policy.notes


def test_provider_terms_and_model_licence_together(shipped):
    decision = evaluate(
        shipped,
        "Llama-4-Maverick-17B-128E-Instruct-FP8",
        ["https://api.llama.com/compat/v1"],
        UseConfig(attestation="The student is not competing with Meta"),
    )
    assert (decision.policy_id, decision.outcome) == ("meta-llama-api", AWO)
    assert [g.policy_id for g in decision.also_governed_by] == ["llama-4"]
    assert {o.policy_id for o in decision.obligations} == {"llama-4", "meta-llama-api"}


def test_quickstart_project_policy_overrides_the_shipped_smollm2():
    quickstart = shipped_dir("examples") / "quickstart"
    assert [p.id for p in load_policy_folder(quickstart / "policies")] == ["smollm2"]
    decision = gate(load_config(quickstart / "distill.yaml"))
    assert (decision.policy_id, decision.outcome, decision.origin) == ("smollm2", AWO, "project")
    assert decision.policy_file == "policies/smollm2.yaml"
    assert decision.warnings == []
