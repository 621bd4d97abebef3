"""On-policy distillation against offline KD and SFT on the quickstart (issue 18).

Takes a quickstart run that has harvested and filtered (its kept records, pruned student-init
and policy decision) and, for each held-out split, rebuilds the datasets with that split's seed
(benchmarks/quality.py's `build_split`), then trains one student per variant from the same
pruned init with the same seed, learning rate, batch size and number of optimizer steps:

- `sft`: cross-entropy on the teacher's answers;
- `kd`: offline sparse KD on the teacher's stored top-20 (alpha 0.5);
- `on-policy-l1`: the student samples, the in-process teacher scores (top-20), generalised JSD
  (beta 0.5) on every step;
- `on-policy-l0.5`: half the steps on-policy, half offline KD batches.

The on-policy variants are sized (rounds × prompts per round × max_new_tokens) so the teacher
tokens they have scored are about the teacher answer tokens the offline variants train on (the
train split's answers); the table reports both. Each trained student is measured on the split's
held-out prompts:

(a) `teacher_nll_on_student_samples`: the teacher's NLL per token of the student's own sampled
    answers (synthdistill/eval_student_samples.py; the same prompts and seeds for every student);
(b) `nll_per_token`: the student's NLL of the teacher's held-out answers (evaluate.score_model);
(c) teacher tokens (offline: the train split's answer tokens; on-policy: tokens scored) and wall time.

    python benchmarks/on_policy.py --project /path/to/quickstart/distill.yaml --splits 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import build_split  # noqa: E402  (benchmarks/ is not a package)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PROJECT = REPO / "examples" / "quickstart" / "distill.yaml"
VARIANTS = {
    "sft": {"method": "sft"},
    "kd": {"method": "kd", "kd": {"alpha": 0.5, "temperature": 1.0, "tail": "bucket"}},
    "on-policy-l1": {"method": "on-policy", "lambda": 1.0},
    "on-policy-l0.5": {"method": "on-policy", "lambda": 0.5},
}


def variant_project(source: Path, split_run: Path, label: str, split_seed: int, args) -> Path:
    """A project for one variant on one split, sharing the split's datasets, init and decision (symlinks)."""
    root = split_run.parent.parent / label
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for folder in ("prompts", "policies"):
        if (source.parent / folder).is_dir():
            shutil.copytree(source.parent / folder, root / folder)
    data = yaml.safe_load(source.read_text())
    spec = VARIANTS[label]
    data["output_dir"] = "outputs"
    data["datasets"] = {**data.get("datasets", {}), "seed": split_seed, "eval_fraction": args.eval_fraction}
    student = data["student"]
    student.update(method=spec["method"], seed=split_seed, max_steps=args.steps, batch_size=args.batch_size)
    student["learning_rate"] = args.learning_rate
    if "kd" in spec:
        student["kd"] = spec["kd"]
    student["on_policy"] = {
        "lambda": spec.get("lambda", 1.0),
        "beta": 0.5,
        "rounds": args.rounds,
        "steps_per_round": args.steps // args.rounds,
        "prompts_per_round": args.prompts_per_round,
        "samples_per_prompt": 1,
        "max_new_tokens": args.max_new_tokens,
        "temperature": 0.9,
        "scoring_top_k": 20,
        "eval_prompts": args.eval_prompts,
    }
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    run = root / "outputs" / data["name"]
    (run / "harvest").mkdir(parents=True)
    for part in ("datasets", "student-init", "harvest/decision.json"):
        if (split_run / part).exists():
            (run / part).symlink_to(split_run / part)
    return path


def measure(config, model_dir: Path, label: str) -> dict:
    """(a) and (b) of one model on the split's held-out prompts and answers."""
    from transformers import AutoTokenizer

    from synthdistill.eval_student_samples import held_out_prompts, judge_for, student_sample_nll
    from synthdistill.evaluate import eval_rows, load_model, score_model
    from synthdistill.run_layout import HELD_OUT_SPLIT
    from synthdistill.train.data import read_rows

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows, has_kd = eval_rows(config, tokenizer)
    model = load_model(model_dir)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    metrics = score_model(model, rows, pad, has_kd)
    held_out = read_rows(config.layout, "sft", HELD_OUT_SPLIT, ["prompt_id", "messages"])
    prompts = held_out_prompts(held_out, config.student.on_policy.eval_prompts)
    judge, why = judge_for(config)
    if judge is None:
        raise SystemExit(f"{label}: the teacher cannot score: {why}")
    metrics["teacher_nll_on_student_samples"], _ = student_sample_nll(
        config, judge, model, tokenizer, model_dir, prompts
    )
    metrics["eval_prompts"] = len(prompts)
    metrics["measure_seconds"] = round(time.perf_counter() - started, 1)
    return metrics


def offline_teacher_tokens(config) -> int:
    """Teacher answer tokens of the train split: what the offline variants learn from."""
    from synthdistill.run_layout import TRAIN_SPLIT
    from synthdistill.train.data import read_rows

    rows = read_rows(config.layout, "kd", TRAIN_SPLIT, ["labels"])
    return sum(sum(1 for label in row["labels"] if label != -100) for row in rows)


def run_variant(source: Path, split_run: Path, label: str, split_seed: int, args) -> dict:
    from synthdistill import train
    from synthdistill.config import load_config

    config = load_config(variant_project(source, split_run, label, split_seed, args))
    started = time.perf_counter()
    summary = train.run(config)
    train_wall = time.perf_counter() - started
    on_policy = summary.on_policy or {}
    offline_tokens = offline_teacher_tokens(config)
    offline_share = 0.0 if label == "on-policy-l1" else (0.5 if label == "on-policy-l0.5" else 1.0)
    return {
        "split": split_seed,
        "label": label,
        "steps": summary.steps,
        "train_wall_seconds": round(train_wall, 1),
        "teacher_tokens_scored_on_policy": on_policy.get("teacher_tokens_scored", 0),
        "teacher_answer_tokens_offline": offline_tokens if offline_share else 0,
        "batches": on_policy.get("batches"),
        "teacher_target_share": summary.teacher_target_share,
        "trained": measure(config, config.layout.student_dir, label),
    }


def markdown(results: list[dict], untrained: dict[int, dict]) -> str:
    labels = list(dict.fromkeys(r["label"] for r in results))
    splits = sorted({r["split"] for r in results})
    by = {(r["split"], r["label"]): r for r in results}
    lines = [
        "| split | student | steps | (a) teacher NLL of own samples ↓ | (b) NLL of teacher answers ↓ | "
        "teacher tokens (on-policy scored / offline answers) | train wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in splits:
        base = untrained[split]
        lines.append(
            f"| {split} | untrained | 0 | {base['teacher_nll_on_student_samples']:.4f} | {base['nll_per_token']:.4f} | – | – |"
        )
        for label in labels:
            r = by[(split, label)]
            t = r["trained"]
            lines.append(
                f"| {split} | {label} | {r['steps']} | {t['teacher_nll_on_student_samples']:.4f} | "
                f"{t['nll_per_token']:.4f} | {r['teacher_tokens_scored_on_policy']} / {r['teacher_answer_tokens_offline']} | "
                f"{r['train_wall_seconds']} |"
            )
    lines += ["", "Mean over splits:", "", "| student | (a) ↓ | (b) ↓ | train wall s |", "|---|---|---|---|"]
    mean = statistics.mean
    lines.append(
        f"| untrained | {mean(untrained[s]['teacher_nll_on_student_samples'] for s in splits):.4f} | "
        f"{mean(untrained[s]['nll_per_token'] for s in splits):.4f} | – |"
    )
    for label in labels:
        rs = [by[(s, label)] for s in splits]
        lines.append(
            f"| {label} | {mean(r['trained']['teacher_nll_on_student_samples'] for r in rs):.4f} | "
            f"{mean(r['trained']['nll_per_token'] for r in rs):.4f} | {mean(r['train_wall_seconds'] for r in rs):.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--project", type=Path, default=DEFAULT_PROJECT, help="distill.yaml of a harvested+filtered run"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/synthdistill-on-policy"))
    parser.add_argument("--splits", type=int, default=2)
    parser.add_argument("--eval-fraction", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps of every variant")
    parser.add_argument("--rounds", type=int, default=3, help="on-policy rounds (steps / rounds steps each)")
    parser.add_argument("--prompts-per-round", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--eval-prompts", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    from synthdistill.config import load_config

    source = args.project.resolve()
    labels = args.variant or list(VARIANTS)
    results, untrained = [], {}
    started = time.perf_counter()
    for split_seed in range(args.splits):
        split_run = build_split(source, args.workdir, split_seed, args.eval_fraction)
        base = load_config(split_run.parent.parent / "distill.yaml")
        base.student.on_policy.eval_prompts = args.eval_prompts
        base.student.on_policy.max_new_tokens = args.max_new_tokens
        untrained[split_seed] = measure(base, split_run / "student-init", "untrained")
        for label in labels:
            results.append(run_variant(source, split_run, label, split_seed, args))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
            report = {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.node()}: {platform.processor() or platform.machine()}, "
                f"{__import__('os').cpu_count()} CPUs, {platform.platform()}",
                "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "untrained": untrained,
                "results": results,
                "seconds": round(time.perf_counter() - started, 1),
            }
            if args.json:
                args.json.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(results, untrained)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
