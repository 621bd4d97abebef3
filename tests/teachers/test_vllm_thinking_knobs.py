"""A real vLLM server on this CPU takes `chat_template_kwargs` (skipped, with the reason, where it cannot run).

SmolLM2's template has no thinking switch, so `enable_thinking` changes nothing in its answers:
the test shows that vLLM accepts the body field, and that records keep the knob (it is part of
each request key, so changing it asks again).
"""

from __future__ import annotations

import json

import pytest
import yaml

from synthdistill.cli import main
from tests.harvest_fixtures import ledger_of, ledger_rows, question, write_pack

pytestmark = pytest.mark.slow

N = 3


def test_vllm_accepts_chat_template_kwargs_and_records_keep_them(vllm_server, tmp_path):
    write_pack(tmp_path / "prompts" / "tiny", [question(i) for i in range(N)])
    config = {
        "name": "run",
        "teacher": {
            "backend": "openai",
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "base_url": vllm_server.base_url,
            "api_style": "vllm",
            "chat_template_kwargs": {"enable_thinking": False},
            "timeout_s": 120,
        },
        "harvest": {"packs": ["prompts/tiny"], "max_tokens": 8, "top_logprobs": 2, "temperature": 0.0},
    }
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["harvest", "-c", str(path)]) == 0, vllm_server.log_tail()
    records = [json.loads(r[2]) for r in ledger_rows(ledger_of(tmp_path)) if r[1] == "done"]
    assert len(records) == N
    assert all(r["sampling"]["chat_template_kwargs"] == {"enable_thinking": False} for r in records)
    assert all(r["reasoning"] is None and r["text"] for r in records)
