"""`synthdistill harvest` against each server dialect: the design §7 record is complete every time."""

from __future__ import annotations

import json

import pytest

from synthdistill.cli import main
from tests.harvest_fixtures import assert_each_prompt_answered_once, ledger_of, ledger_rows, write_project
from tests.openai_server import FakeOpenAIServer, split_tokens, token_id

N = 4
SAMPLES = 2


def assert_record_complete(
    record: dict,
    *,
    model_answered: str,
    fingerprint: str | None,
    endpoint: str | None,
    backend: str,
    width: int,
    attempts: int = 1,
) -> None:
    """Every field design §7 asks of a record, with logprobs of `width` alternatives per position."""
    assert record["request_key"] and record["prompt_id"] and record["pack"] == "tiny"
    assert record["pack_version"] == "1.0.0" and record["sample_index"] in range(SAMPLES)
    assert record["messages"][-1]["role"] == "user" and record["text"]
    assert record["finish_reason"] in ("stop", "length")
    assert record["model_requested"] and record["model_answered"] == model_answered
    assert record["backend"] == backend and record["endpoint"] == endpoint
    assert record["system_fingerprint"] == fingerprint
    assert record["sampling"]["top_logprobs"] == width
    assert record["usage"]["completion_tokens"] == len(record["tokens"]) > 0
    assert record["latency_ms"] > 0 and record["attempts"] == attempts and record["harvested_at"]
    assert record["policy_id"] and record["decision"].startswith("allow")
    T = len(record["tokens"])
    assert len(record["token_logprobs"]) == len(record["top_tokens"]) == len(record["top_logprobs"]) == T
    assert all(len(row) == width for row in record["top_logprobs"])
    assert all(len(row) == width for row in record["top_tokens"])


@pytest.mark.parametrize(
    "dialect, teacher, ids",
    [
        ("openai", {"api_style": "openai"}, False),
        ("vllm", {}, True),  # auto: /models says vllm → token ids
        ("llamacpp", {"api_style": "llamacpp"}, False),  # llama-cpp-python: bytes null, no ids
        ("together", {"api_style": "together"}, True),
        ("ollama", {"api_style": "ollama"}, False),
        ("vllm", {"endpoint": "completions"}, True),
    ],
)
def test_every_dialect_gives_complete_records(tmp_path, capsys, dialect, teacher, ids):
    with FakeOpenAIServer(
        dialect=dialect, model="served-name", fail_first_n_per_prompt=1, fail_kinds=["503"], retry_after=0.01
    ) as server:
        config = write_project(
            tmp_path,
            server.base_url,
            N,
            teacher={**teacher, "max_concurrency": 4},
            harvest={"samples_per_prompt": SAMPLES, "temperature": 0.0},
        )
        rc = main(["harvest", "-c", str(config), "--json"])
        out, err = capsys.readouterr()
        port = server.port
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["answered"] == N * SAMPLES and summary["failed"] == 0
    ledger = ledger_of(tmp_path)
    records = [json.loads(r[2]) for r in ledger_rows(ledger)]
    assert len(records) == N * SAMPLES
    # one request per sample (llama.cpp ignores n > 1); each sample its own seed
    assert sorted((r["prompt_id"], r["sample_index"]) for r in records) == sorted(
        {(r["prompt_id"], s) for r in records for s in range(SAMPLES)}
    )
    assert len({r["sampling"]["seed"] for r in records}) == SAMPLES
    for record in records:
        # each prompt's first attempt got a 503: the sample that met it took 2 attempts
        assert_record_complete(
            record,
            model_answered="served-name",
            fingerprint="fp_fake_openai",
            endpoint=f"127.0.0.1:{port}",
            backend="openai",
            width=5,
            attempts=record["attempts"],
        )
        assert record["attempts"] in (1, 2)
        tokens = split_tokens("Answer to: " + record["messages"][-1]["content"])
        assert record["token_ids"] == ([token_id(t) for t in tokens] if ids else None)
    assert sum(r["attempts"] for r in records) == N * SAMPLES + N


def test_single_sample_records_are_unique_per_prompt(tmp_path, capsys):
    with FakeOpenAIServer(dialect="llamacpp") as server:
        config = write_project(tmp_path, server.base_url, N, teacher={"api_style": "llamacpp"})
        assert main(["harvest", "-c", str(config), "--json"]) == 0, capsys.readouterr().err
    assert_each_prompt_answered_once(ledger_of(tmp_path), N)
