"""Matching cannot be fooled by spelling: normalised names and hosts, kinds, most restrictive wins."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from synthdistill.config import UseConfig
from synthdistill.policy import evaluate, host_of, load_policies, model_names, normalise_segment, same_model
from synthdistill.policy.matching import governing_matches, normalise_glob

TABLE = Path(__file__).resolve().parent.parent / "data" / "policy_ids.csv"
DEFAULT_USE = UseConfig()  # commercial, distributed, not competing, no attestation


@pytest.mark.parametrize(
    ("segment", "normalised"),
    [
        ("Qwen2.5-Coder-3B-Instruct", "qwen2.5-coder-3b-instruct"),
        ("  SmolLM2-135M-Instruct ", "smollm2-135m-instruct"),
        ("qwen2.5-coder:3b", "qwen2.5-coder-3b"),
        ("qwen2.5:latest", "qwen2.5"),
        ("llama3.1:8b-instruct-q4_K_M", "llama3.1-8b-instruct"),
        ("Meta-Llama-3.1-8B-Instruct-GGUF", "meta-llama-3.1-8b-instruct"),
        ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "meta-llama-3.1-8b-instruct"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct"),
        ("Qwen2.5-72B-Instruct-AWQ", "qwen2.5-72b-instruct"),
        ("Mistral-7B-Instruct-v0.3-GPTQ", "mistral-7b-instruct-v0.3"),
        ("Llama-3.2-3B-Instruct-MLX-4bit", "llama-3.2-3b-instruct"),
        ("Llama-3.2-3B-Instruct-bnb-4bit", "llama-3.2-3b-instruct"),
        ("gemma-3-4b-it-IQ4_XS", "gemma-3-4b-it"),
        ("Qwen-1_8B-Chat", "qwen-1-8b-chat"),
        ("DeepSeek-R1-0528", "deepseek-r1-0528"),
        ("Llama-2-7b-chat-hf", "llama-2-7b-chat-hf"),
    ],
)
def test_a_segment_is_normalised(segment, normalised):
    assert normalise_segment(segment) == normalised


def test_every_path_segment_is_a_name_last_first():
    assert model_names("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF") == ["meta-llama-3.1-8b-instruct", "bartowski"]
    assert model_names("HuggingFaceTB/SmolLM2-135M/meta-llama/Llama-2-7b-chat-hf") == [
        "llama-2-7b-chat-hf",
        "meta-llama",
        "smollm2-135m",
        "huggingfacetb",
    ]
    assert model_names("/models/./Qwen2.5-3B-Instruct/") == ["qwen2.5-3b-instruct", "models"]
    assert same_model("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b-instruct")
    assert same_model("HuggingFaceTB/SmolLM2-135M-Instruct", "/cache/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert not same_model("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-3B-Instruct")


def test_globs_are_normalised_like_names():
    assert normalise_glob("Qwen/Qwen2.5-*") == normalise_glob("Qwen2.5-*") == "qwen2.5-*"
    assert normalise_glob("Qwen-1_8B*") == "qwen-1-8b*"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://API.Anthropic.com/v1", "api.anthropic.com"),
        ("https://claude.ai./api", "claude.ai"),
        ("https://user:secret@chatgpt.com.:443/backend-api", "chatgpt.com"),
        ("http://127.0.0.1:8000/v1", "127.0.0.1"),
        ("localhost:8000", "localhost"),
        ("http://[::1]:8000/v1", "::1"),
        ("not a url at all", "not a url at all"),
    ],
)
def test_hosts_are_normalised(url, host):
    assert host_of(url) == host


@pytest.fixture(scope="module")
def shipped():
    return load_policies(None)


def test_no_shipped_model_glob_matches_a_bare_org_or_folder_name(shipped):
    orgs = [
        "qwen",
        "deepseek-ai",
        "meta-llama",
        "mistralai",
        "google",
        "microsoft",
        "tiiuae",
        "allenai",
        "nvidia",
        "openai",
        "moonshotai",
        "zai-org",
        "thudm",
        "huggingfacetb",
        "models",
        "home",
        "root",
        "bartowski",
        "thebloke",
        "unsloth",
        "mlx-community",
        "lmstudio-community",
        "cache",
        "hf.co",
        "accounts",
        "fireworks",
    ]
    for org in orgs:
        matches, _ = governing_matches(shipped, org, [])
        assert [m.loaded.id for m in matches] == [], org


def _table() -> list[dict[str, str]]:
    with TABLE.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_table_holds_at_least_150_real_model_ids():
    rows = _table()
    assert len(rows) >= 150
    assert len({(r["model"], r["base_url"]) for r in rows}) == len(rows), "duplicate rows"


@pytest.mark.parametrize("row", _table(), ids=lambda r: f"{r['model']}@{r['base_url'] or 'local'}")
def test_each_model_id_is_governed_by_the_policy_it_must_be(shipped, row):
    urls = [row["base_url"]] if row["base_url"] else []
    decision = evaluate(shipped, row["model"], urls, DEFAULT_USE)
    ids = [decision.policy_id, *(g.policy_id for g in decision.also_governed_by)] if decision.policy_id else []
    kinds = {p.id: p.policy.kind for p in shipped}
    weights = "+".join(sorted(i for i in ids if kinds[i] == "weights-licence")) or "-"
    api = "+".join(sorted(i for i in ids if kinds[i] == "api-terms")) or "-"
    assert (weights, api, decision.outcome) == (row["weights"], row["api"], row["outcome"]), decision.reason
