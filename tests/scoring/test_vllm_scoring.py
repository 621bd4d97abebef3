"""Scoring end to end against the real vLLM CPU server (SmolLM2-135M-Instruct): `prompt_logprobs` as vLLM sends them.

Skipped, with the reason, where the server cannot run (conftest.py's `vllm_server`). The same
samples are scored in-process by the same model: the two readings must agree.
"""

from __future__ import annotations

import math

import pytest
import yaml

from synthdistill.config import load_config
from synthdistill.records import Message
from synthdistill.scoring import SampleToScore, probe_scoring, score_samples
from tests.harvest_fixtures import write_pack

pytestmark = pytest.mark.slow

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TEXTS = [" Paris is the capital of France.", "Blue, mostly — on a clear day. 🌤", "Hola!"]


def _config(root, teacher: dict):
    write_pack(root / "prompts" / "tiny", ["Say something."])
    spec = {
        "name": "run",
        "teacher": {"model": MODEL, "policy": "auto", "timeout_s": 120, "max_concurrency": 2, **teacher},
        "harvest": {"packs": ["prompts/tiny"], "top_logprobs": 20},
    }
    (root / "distill.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_config(root / "distill.yaml")


def _samples() -> list[SampleToScore]:
    return [
        SampleToScore(
            checkpoint="round-0001",
            prompt_id=f"p{i}",
            sample_index=0,
            messages=[Message(role="user", content=f"Question {i}?")],
            text=text,
            ended=i == 0,
        )
        for i, text in enumerate(TEXTS)
    ]


def test_vllm_scores_agree_with_the_in_process_teacher(vllm_server, tmp_path, smollm2_dir):
    remote = _config(tmp_path / "remote", {"backend": "openai", "base_url": vllm_server.base_url})
    probe = probe_scoring(remote)
    assert probe.style == "vllm-prompt-logprobs" and probe.top_k == 20 and probe.token_ids
    over_http = score_samples(remote, _samples())
    in_process = score_samples(_config(tmp_path / "local", {"backend": "transformers"}), _samples())
    for sample, http, local in zip(_samples(), over_http, in_process):
        tokens = http.logprobs.tokens
        assert "".join(tokens[:-1] if sample.ended else tokens) == sample.text
        if sample.ended:
            assert tokens[-1] == "<|im_end|>"
        assert all(len(row) == 20 for row in http.logprobs.top_logprobs)
        assert http.endpoint and http.prompt_tokens_scored > len(tokens)
        if http.logprobs.token_ids == local.logprobs.token_ids:  # the same tokenization: the same numbers
            for a, b in zip(http.logprobs.token_logprobs, local.logprobs.token_logprobs):
                assert math.isclose(a, b, abs_tol=0.05), (sample.text, a, b)
