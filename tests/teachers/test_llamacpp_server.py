"""End to end against a real llama.cpp server (llama-cpp-python) serving the SmolLM2 GGUF.

The server is started here on a free loopback port; `.ci/run` installs
`llama-cpp-python[server]`. Without it the module is skipped, saying so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (pip install 'llama-cpp-python[server]'; .ci/run does)"
)

from synthdistill.cli import main
from tests.harvest_fixtures import ledger_of, ledger_rows, write_pack
from tests.llamacpp_server import MODEL, llamacpp_server

QUESTIONS = ["What is the capital of France?", "Name a colour of the sky.", "Name a large animal."]
TOP = 5


@pytest.fixture(scope="module")
def llamacpp_url(tmp_path_factory):
    """Base URL of a llama.cpp server with SmolLM2-135M-Instruct, for this module."""
    with llamacpp_server(tmp_path_factory.mktemp("llamacpp") / "server.log") as base_url:
        yield base_url


def _project(root: Path, base_url: str, teacher: dict | None = None, questions: list[str] = QUESTIONS) -> Path:
    write_pack(root / "prompts" / "tiny", questions)
    config = {
        "name": "run",
        "teacher": {
            "backend": "openai",
            "model": MODEL,
            "base_url": base_url,
            "policy": "auto",
            "max_concurrency": 2,
            "timeout_s": 120,
            **(teacher or {}),
        },
        "harvest": {"packs": ["prompts/tiny"], "max_tokens": 16, "top_logprobs": TOP, "temperature": 0.0},
    }
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _harvest(capsys, config: Path, n: int = len(QUESTIONS)) -> list[dict]:
    rc = main(["harvest", "-c", str(config), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["answered"] == n and summary["failed"] == 0
    rows = ledger_rows(ledger_of(config.parent))
    assert [status for _, status, _ in rows] == ["done"] * n
    return [json.loads(record) for _, _, record in rows]


def _assert_greedy_logprobs(record: dict) -> None:
    """Top-5 rows, best first; at temperature 0 (llama.cpp's own samplers off) the chosen token is the top-1.

    llama-cpp-python keys each row by the token's text (decoded alone, bytes null), so
    candidates spelled alike (pieces of one emoji all decode to "") collapse into one
    entry: a row may be narrower than 5, and a "" token is not checked.
    """
    T = len(record["tokens"])
    assert 1 <= T <= 16 and record["usage"]["completion_tokens"] == T
    assert len(record["token_logprobs"]) == len(record["top_tokens"]) == len(record["top_logprobs"]) == T
    for t in range(T):
        top, names = record["top_logprobs"][t], record["top_tokens"][t]
        assert len(top) == len(names) and 1 <= len(top) <= TOP
        assert top == sorted(top, reverse=True) and top[0] <= 0.0
        assert sum(math.exp(v) for v in top) <= 1.0 + 1e-3
        if record["tokens"][t] != "":
            assert names[0] == record["tokens"][t], (t, names, record["tokens"][t])
            assert record["token_logprobs"][t] == pytest.approx(top[0], abs=1e-3)


def test_harvest_against_llamacpp_records_text_logprobs_and_provenance(tmp_path, capsys, llamacpp_url):
    records = _harvest(capsys, _project(tmp_path, llamacpp_url))
    port = llamacpp_url.split(":")[2].split("/")[0]
    assert sorted(r["messages"][-1]["content"] for r in records) == sorted(QUESTIONS)
    rows = [len(row) for r in records for row in r["top_logprobs"]]
    assert sum(width == TOP for width in rows) >= 0.75 * len(rows), rows  # narrower rows are the exception
    for record in records:
        assert record["text"].strip() and record["finish_reason"] in ("stop", "length")
        if "" not in record["tokens"]:
            assert "".join(record["tokens"]) == record["text"]
        _assert_greedy_logprobs(record)
        assert record["model_requested"] == MODEL
        assert record["model_answered"] == MODEL  # llama-cpp-python answers with its --model_alias
        assert record["backend"] == "openai" and record["endpoint"] == f"127.0.0.1:{port}"
        assert record["latency_ms"] > 0 and record["attempts"] == 1 and record["harvested_at"]
        assert record["policy_id"] == "smollm2" and record["decision"] == "allow-with-obligations"


def test_legacy_completions_endpoint_against_llamacpp(tmp_path, capsys, llamacpp_url):
    # /completions continues raw text (no chat template): prompts that want continuing
    openings = ["The capital of France is", "Once upon a time, there was"]
    config = _project(tmp_path, llamacpp_url, {"endpoint": "completions"}, openings)
    records = _harvest(capsys, config, len(openings))
    for record in records:
        assert record["text"] and record["model_answered"] == MODEL
        _assert_greedy_logprobs(record)
