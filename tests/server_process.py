"""What the real-server helpers share (tests/vllm_server.py, tests/llamacpp_server.py): a port, a readiness wait."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def wait_ready(process: subprocess.Popen, base_url: str, log: Path, name: str, seconds: float) -> None:
    """Poll `GET {base_url}/models` until 200; RuntimeError with the log's tail if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_tail(log)}")
        try:
            if httpx.get(f"{base_url}/models", timeout=5, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{name} not ready within {seconds} s:\n{log_tail(log)}")
