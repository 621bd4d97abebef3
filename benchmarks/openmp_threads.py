"""Why the in-process teacher runs its model on one thread (`TransformersTeacher.in_model_thread`).

PyTorch's OpenMP (libgomp on Linux) keeps a team of threads for each thread that has run a parallel
operation. This times the operations a decoding step is made of, on a worker thread, in a fresh
process each: once with no other team alive, once after the main thread has run one parallel
operation (its team lives on). Prints microseconds per call.

    python benchmarks/openmp_threads.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time


def child(main_team: bool) -> dict:
    import torch

    hidden = torch.randn(100, 1, 576)
    rows, weight = torch.randn(100, 576), torch.randn(1536, 576)
    operations = {
        "RMSNorm of 100 rows × 576": lambda: hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + 1e-5),
        "add, 100 × 576": lambda: hidden + hidden,
        "linear 100 × 576 → 1536 (MKL)": lambda: torch.nn.functional.linear(rows, weight),
    }
    if main_team:
        torch.randn(1000, 1000).sum()  # any parallel operation on the main thread starts its team
    timings = {}

    def measure():
        for name, operation in operations.items():
            for _ in range(5):
                operation()
            started = time.perf_counter()
            for _ in range(300):
                operation()
            timings[name] = (time.perf_counter() - started) / 300 * 1e6

    worker = threading.Thread(target=measure)
    worker.start()
    worker.join()
    return timings


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2] == "1")))
        return 0
    runs = {}
    for main_team in (False, True, False, True):  # interleaved, two of each
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(int(main_team))], capture_output=True, text=True, check=True
        )
        runs.setdefault(main_team, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| operation, on a worker thread | no other team (µs) | main thread's team alive (µs) | ratio |")
    print("|---|---|---|---|")
    for name in runs[False][0]:
        alone = min(r[name] for r in runs[False])
        beside = min(r[name] for r in runs[True])
        print(f"| {name} | {alone:.1f} | {beside:.1f} | {beside / alone:.1f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
