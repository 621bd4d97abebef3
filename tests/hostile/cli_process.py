"""Run the real `synthdistill` CLI in a child process and measure what it cost (seconds, peak memory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Finished:
    code: int
    out: str
    err: str
    seconds: float
    max_rss_mib: float


def start_cli(*args: str, cwd: Path, out: Path, env: dict | None = None) -> subprocess.Popen:
    """`python -m synthdistill ARGS` with stdout/stderr going to files under `out` (a folder)."""
    out.mkdir(parents=True, exist_ok=True)
    stdout = (out / "stdout").open("w")
    stderr = (out / "stderr").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "synthdistill", *args],
        cwd=cwd,
        stdout=stdout,
        stderr=stderr,
        env=env or dict(os.environ),
        text=True,
    )


def finish(process: subprocess.Popen, out: Path, started: float, timeout_s: float = 60.0) -> Finished:
    """Wait for `process` (killing it past `timeout_s`) and read what it printed and cost."""
    deadline = started + timeout_s
    peak_kib = 0
    while True:
        peak_kib = max(peak_kib, _high_water_kib(process.pid))
        pid, status, _ = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.kill(process.pid, signal.SIGKILL)
            pid, status, _ = os.wait4(process.pid, 0)
            break
        time.sleep(0.01)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    return Finished(
        process.returncode, (out / "stdout").read_text(), (out / "stderr").read_text(), seconds, peak_kib / 1024
    )


def _high_water_kib(pid: int) -> int:
    """The child's peak resident memory so far (VmHWM), read while it runs.

    Not the rusage of wait4: that counts the memory of the forked copy of this (large)
    test process from before the child's exec.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_cli(*args: str, cwd: Path, timeout_s: float = 60.0, env: dict | None = None) -> Finished:
    out = Path(cwd) / f".cli-{time.monotonic_ns()}"
    started = time.monotonic()
    return finish(start_cli(*args, cwd=cwd, out=out, env=env), out, started, timeout_s)
