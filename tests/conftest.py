"""Shared fixtures: isolated user state, the embedded model folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on CI's 2 cores: one torch thread each (and in the CLIs they start). With torch's
    # default of one per core the training tests oversubscribed the cores and ran ~4x slower.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

REPO = Path(__file__).resolve().parent.parent


# Files whose tests share one session-scoped server: under xdist they run in the same worker,
# so the server starts once (a vLLM server takes ~50 s and ~4 GiB).
SHARED_SERVER_FILES = {"test_vllm_server.py": "vllm", "test_vllm_scoring.py": "vllm"}


def pytest_collection_modifyitems(config, items):
    """Under `-n N --dist loadgroup` each test file runs whole in one worker (its module fixtures run once)."""
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group(SHARED_SERVER_FILES.get(name, str(item.path))))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """Keep tests away from the user's state; the model cache is shared (conversion is slow)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a transformers folder (converted once, cached)."""
    from synthdistill.model_store import resolve_model

    return resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def tiny_student(smollm2_dir, tmp_path_factory) -> Path:
    """A randomly initialised 4-layer Llama with SmolLM2's tokenizer, saved once per session."""
    from tests.training_fixtures import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), smollm2_dir)


@pytest.fixture(scope="session")
def tokenizer(smollm2_dir):
    """SmolLM2's tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="session")
def vllm_server(smollm2_dir, tmp_path_factory):
    """A real vLLM server on this CPU serving SmolLM2-135M-Instruct: started once per session, stopped at its end.

    Skipped, with the reason, where it cannot run (no venv from scripts/setup_vllm.sh, an untested CPU);
    a server that should start but does not fails the tests that use it, with its log.
    """
    from tests.vllm_server import VllmServer, skip_reason

    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with VllmServer(tmp_path_factory.mktemp("vllm") / "server.log", smollm2_dir) as server:
        yield server
