"""Time and peak memory of one KD training step vs one SFT step on the same batch (issue 7).

Each method runs in its own subprocess (so `ru_maxrss`, the process's peak resident memory,
belongs to that method alone) through the real trainers of synthdistill/train/stage.py: TRL's
`SFTTrainer` (its loss uses TRL's fused, chunked LM head) and synthdistill's `KDTrainer`.
One step = `trainer.training_step` (forward + loss + backward) + `optimizer.step()` +
`zero_grad()`, on the same batch: the first `--batch` rows of the KD train split, whose
`input_ids`/`labels` the SFT step uses too (SFT simply ignores the teacher's top-k).

    python benchmarks/train_step.py                    # quickstart run folder, batch 8, 3 warm-up + 7 timed steps
    python benchmarks/train_step.py --synthetic qwen2.5-0.5b --seq 4096 --batch 1 --warmup 1 --steps 2 --rounds 1

`--synthetic` replaces the quickstart student and batch with a randomly initialised model of a
real architecture (no download: weights do not matter for time and memory) and one random
sequence of `--seq` tokens whose last three quarters are the answer, with a random teacher
top-20 at each answer position. On a GPU the peak is `torch.cuda.max_memory_allocated`.
`--kd-path logits` measures the KD loss on the model's full logits instead of the hidden-state
head that `synthdistill train` uses.
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
DEFAULT_PROJECT = REPO / "synthdistill" / "data" / "examples" / "quickstart" / "distill.yaml"


def rss_mib() -> float:
    """Current resident memory of this process (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# Shapes of real students, built with random weights (the numbers need no trained weights).
SYNTHETIC = {
    "qwen2.5-0.5b": dict(
        model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True,
    ),
}  # fmt: skip


def synthetic_setup(name: str, seq: int, batch_size: int):
    """A random-weight model of a real shape and random KD rows of `seq` tokens (last 3/4 = answer)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = dict(SYNTHETIC[name])
    config = AutoConfig.for_model(shape.pop("model_type"), **shape)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(batch_size):
        ids = torch.randint(0, config.vocab_size, (seq,), generator=g).tolist()
        answer = seq // 4
        top = torch.randint(0, config.vocab_size, (seq, 20), generator=g)
        logprobs = torch.log_softmax(torch.randn(seq, 21, generator=g), -1)[:, :20]
        rows.append({
            "input_ids": ids, "labels": [-100] * answer + ids[answer:],
            "kd_ids": top.tolist(), "kd_logprobs": logprobs.tolist(), "kd_mask": [0] * answer + [1] * (seq - answer),
        })  # fmt: skip
    return model, rows, 0


def quickstart_setup(config, batch_size: int):
    """The quickstart's pruned student and the first `batch_size` rows of its KD train split."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthdistill.train.data import kd_token_rows, read_rows

    start = config.run_dir / "student-init"
    tokenizer = AutoTokenizer.from_pretrained(start)
    rows = kd_token_rows(read_rows(config.layout, "kd", "train"))[:batch_size]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32), rows, pad


def worker(project: Path, method: str, args: argparse.Namespace) -> dict:
    """Build the real trainer for `method`, run warm-up + timed steps on one fixed batch; return the numbers."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from synthdistill.config import load_config
    from synthdistill.model_store import quiet_model_loading
    from synthdistill.train.data import PaddingCollator
    from synthdistill.train.stage import _add_kd_head, _kd_trainer_class
    from synthdistill.train.trainer_args import training_args

    quiet_model_loading()
    torch.manual_seed(0)
    config = load_config(project)
    use_gpu = torch.cuda.is_available()
    if args.synthetic:
        model, rows, pad = synthetic_setup(args.synthetic, args.seq, args.batch)
    else:
        model, rows, pad = quickstart_setup(config, args.batch)
    if method == "sft":
        rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    collate = PaddingCollator(pad)
    batch = collate(rows)
    tokenizer = AutoTokenizer.from_pretrained(config.run_dir / "student-init")  # only pads; never sees these ids
    trainer_class = _kd_trainer_class() if method == "kd" else SFTTrainer
    with tempfile.TemporaryDirectory() as scratch:
        trainer = trainer_class(
            model=model,
            args=training_args(config, Path(scratch), use_gpu),
            train_dataset=Dataset.from_list(rows[:1]),
            data_collator=collate,
            processing_class=tokenizer,
        )
    if method == "kd":
        trainer.kd_settings = config.require_student("bench").kd
        trainer._kd_parts = []
        trainer.kd_head = args.kd_path == "hidden" and _add_kd_head(trainer.model, trainer.kd_settings)
    if use_gpu:
        batch = {key: value.cuda() for key, value in batch.items()}
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this bypasses
    model = trainer.model
    model.train()
    rss_before = torch.cuda.memory_allocated() / 2**20 if use_gpu else rss_mib()
    times, losses = [], []
    warmup, steps = args.warmup, args.steps
    for _ in range(warmup + steps):
        started = time.perf_counter()
        loss = trainer.training_step(model, dict(batch))  # compute_loss pops keys: give it a copy
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        if use_gpu:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        losses.append(float(loss))
    if use_gpu:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "method": method,
        "device": torch.cuda.get_device_name() if use_gpu else "cpu",
        "memory": "torch.cuda.max_memory_allocated" if use_gpu else "ru_maxrss of the process",
        "kd_path": (args.kd_path if trainer.kd_head else "logits") if method == "kd" else None,
        "batch_shape": list(batch["input_ids"].shape),
        "label_tokens": int((batch["labels"] != -100).sum()),
        "median_step_s": round(statistics.median(times[warmup:]), 4),
        "min_step_s": round(min(times[warmup:]), 4),
        "step_times_s": [round(t, 4) for t in times],
        "memory_before_steps_mib": round(rss_before, 1),
        "peak_memory_mib": round(peak, 1),
        "step_peak_over_baseline_mib": round(peak - rss_before, 1),
        "losses": [round(x, 4) for x in losses],
        "torch_threads": torch.get_num_threads(),
    }


# What each measured variant runs: (method, KD loss path)
VARIANTS = {"sft": ("sft", "hidden"), "kd": ("kd", "hidden"), "kd-logits": ("kd", "logits")}


def run_in_subprocess(project: Path, variant: str, args: argparse.Namespace) -> dict:
    """One variant in a fresh interpreter, so its peak memory is its own."""
    method, kd_path = VARIANTS[variant]
    command = [sys.executable, __file__, "--worker", method, "--project", str(project), "--batch", str(args.batch),
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--seq", str(args.seq),
               "--kd-path", kd_path]  # fmt: skip
    if args.synthetic:
        command += ["--synthetic", args.synthetic]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{variant} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_PROJECT)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=2, help="alternate sft/kd subprocesses this many times")
    parser.add_argument("--synthetic", choices=sorted(SYNTHETIC), help="a random-weight model of this shape")
    parser.add_argument("--seq", type=int, default=4096, help="tokens per synthetic row")
    parser.add_argument("--variants", default="sft,kd", help=f"comma-separated, among {', '.join(VARIANTS)}")
    parser.add_argument("--kd-path", choices=["hidden", "logits"], default="hidden", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["sft", "kd"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    project = args.project.resolve()
    if args.worker:
        print(json.dumps(worker(project, args.worker, args)))
        return 0
    variants = args.variants.split(",")
    results = {variant: [] for variant in variants}
    for _ in range(args.rounds):  # alternate, so load from the other job on the machine hits all alike
        for variant in variants:
            results[variant].append(run_in_subprocess(project, variant, args))
            print(json.dumps(results[variant][-1]), file=sys.stderr, flush=True)
    time_of = {m: statistics.median(r["median_step_s"] for r in rs) for m, rs in results.items()}
    peak_of = {m: min(r["peak_memory_mib"] for r in rs) for m, rs in results.items()}
    step_peak_of = {m: min(r["step_peak_over_baseline_mib"] for r in rs) for m, rs in results.items()}
    summary = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
        "device": results[variants[0]][0]["device"],
        "memory": results[variants[0]][0]["memory"],
        "batch_shape": results[variants[0]][0]["batch_shape"],
        "label_tokens": results[variants[0]][0]["label_tokens"],
        "median_step_s": time_of,
        "peak_memory_mib": peak_of,
        "step_peak_over_baseline_mib": step_peak_of,
        "over_sft": {
            variant: {
                "time": round(time_of[variant] / time_of["sft"], 3),
                "peak_memory": round(peak_of[variant] / peak_of["sft"], 3),
            }
            for variant in variants
            if variant != "sft" and "sft" in variants
        },
        "runs": results,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
