"""Time and peak memory of one KD training step vs one SFT step on the same batch (issue 7).

Each method runs in its own subprocess (so `ru_maxrss`, the process's peak resident memory,
belongs to that method alone) through the real trainers of synthdistill/train.py: TRL's
`SFTTrainer` (its loss uses TRL's fused, chunked LM head) and synthdistill's `KDTrainer`.
One step = `trainer.training_step` (forward + loss + backward) + `optimizer.step()` +
`zero_grad()`, on the same batch: the first `--batch` rows of the KD train split, whose
`input_ids`/`labels` the SFT step uses too (SFT simply ignores the teacher's top-k).

    python benchmarks/train_step.py                    # quickstart run folder, batch 8, 3 warm-up + 7 timed steps
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PROJECT = REPO / "examples" / "quickstart" / "distill.yaml"


def rss_mib() -> float:
    """Current resident memory of this process (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(project: Path, method: str, batch_size: int, warmup: int, steps: int) -> dict:
    """Build the real trainer for `method`, run warm-up + timed steps on one fixed batch; return the numbers."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from synthdistill.config import load_config
    from synthdistill.model_store import quiet_model_loading
    from synthdistill.train import _kd_trainer_class, _training_args
    from synthdistill.train_data import PaddingCollator, kd_token_rows, read_rows

    quiet_model_loading()
    torch.manual_seed(0)
    config = load_config(project)
    start = config.run_dir / "student-init"
    tokenizer = AutoTokenizer.from_pretrained(start)
    rows = kd_token_rows(read_rows(config.run_dir / "datasets" / "kd", "train"))[:batch_size]
    if method == "sft":
        rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    collate = PaddingCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    batch = collate(rows)
    model = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32)
    trainer_class = _kd_trainer_class() if method == "kd" else SFTTrainer
    with tempfile.TemporaryDirectory() as scratch:
        trainer = trainer_class(
            model=model,
            args=_training_args(config, method, Path(scratch), use_gpu=False),
            train_dataset=Dataset.from_list(rows),
            data_collator=collate,
            processing_class=tokenizer,
        )
    if method == "kd":
        trainer.kd_settings = config.require_student("bench").kd
        trainer._kd_parts = []
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this bypasses
    model = trainer.model
    model.train()
    rss_before = rss_mib()
    times, losses = [], []
    for _ in range(warmup + steps):
        started = time.perf_counter()
        loss = trainer.training_step(model, dict(batch))  # compute_loss pops keys: give it a copy
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
        losses.append(float(loss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "method": method,
        "batch_shape": list(batch["input_ids"].shape),
        "label_tokens": int((batch["labels"] != -100).sum()),
        "median_step_s": round(statistics.median(times[warmup:]), 4),
        "min_step_s": round(min(times[warmup:]), 4),
        "step_times_s": [round(t, 4) for t in times],
        "rss_before_steps_mib": round(rss_before, 1),
        "peak_rss_mib": round(peak, 1),
        "step_peak_over_baseline_mib": round(peak - rss_before, 1),
        "losses": [round(x, 4) for x in losses],
        "torch_threads": torch.get_num_threads(),
    }


def run_in_subprocess(project: Path, method: str, args: argparse.Namespace) -> dict:
    """One method in a fresh interpreter, so its peak RSS is its own."""
    command = [sys.executable, __file__, "--worker", method, "--project", str(project), "--batch", str(args.batch),
               "--warmup", str(args.warmup), "--steps", str(args.steps)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{method} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_PROJECT)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=2, help="alternate sft/kd subprocesses this many times")
    parser.add_argument("--worker", choices=["sft", "kd"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    project = args.project.resolve()
    if args.worker:
        print(json.dumps(worker(project, args.worker, args.batch, args.warmup, args.steps)))
        return 0
    results = {"sft": [], "kd": []}
    for _ in range(args.rounds):  # alternate, so load from the other job on the machine hits both alike
        for method in ("sft", "kd"):
            results[method].append(run_in_subprocess(project, method, args))
            print(json.dumps(results[method][-1]), file=sys.stderr, flush=True)
    time_of = {m: statistics.median(r["median_step_s"] for r in rs) for m, rs in results.items()}
    peak_of = {m: min(r["peak_rss_mib"] for r in rs) for m, rs in results.items()}
    step_peak_of = {m: min(r["step_peak_over_baseline_mib"] for r in rs) for m, rs in results.items()}
    summary = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
        "batch_shape": results["kd"][0]["batch_shape"],
        "label_tokens": results["kd"][0]["label_tokens"],
        "median_step_s": time_of,
        "peak_rss_mib": peak_of,
        "step_peak_over_baseline_mib": step_peak_of,
        "kd_over_sft_time": round(time_of["kd"] / time_of["sft"], 3),
        "kd_over_sft_peak_rss": round(peak_of["kd"] / peak_of["sft"], 3),
        "runs": results,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
