"""Does the KD student learn more from the teacher than the SFT student? (issue 7)

Takes a finished quickstart run (its kept records, pruned student-init and policy decision)
and, for each of several held-out splits, rebuilds the datasets with that split's seed
(`datasets.seed`, and the same `student.seed`), then trains one student per variant with
`train_student` and scores it with `evaluate_student` on that split's held-out teacher answers
(NLL per token, top-1 agreement with the teacher, KL on KD positions). Within a split every
variant uses the same data, seed, learning rate, batch size and epochs, so the methods see the
same steps; only method/alpha/temperature vary. The report pairs each KD variant with SFT on
the same split and counts the splits it wins.

    python benchmarks/quality.py                              # 5 splits: SFT vs KD (alpha 0.5, T 1)
    python benchmarks/quality.py --variant sft --variant kd:0.0:1.0 --splits 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PROJECT = REPO / "synthdistill" / "data" / "examples" / "quickstart" / "distill.yaml"
METRICS = (("nll_per_token", "NLL/token ↓", -1), ("top1_agreement", "top-1 agreement ↑", 1), ("kd_kl", "KL ↓", -1))


def variant_label(method: str, alpha: float, temperature: float) -> str:
    """`sft`, or `kd-a0.5-t1`."""
    return f"kd-a{alpha:g}-t{temperature:g}" if method == "kd" else "sft"


def write_project(
    source_yaml: Path, root: Path, split_seed: int, eval_fraction: float, method: str, alpha, temperature, epochs=None
):
    """A copy of the project under `root` with this split's seeds and this variant's method (and epochs)."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("prompts", "policies"):
        if (source_yaml.parent / folder).is_dir() and not (root / folder).exists():
            shutil.copytree(source_yaml.parent / folder, root / folder)
    data = yaml.safe_load(source_yaml.read_text())
    data["output_dir"] = "outputs"
    data["datasets"] = {**data.get("datasets", {}), "seed": split_seed, "eval_fraction": eval_fraction}
    data["student"].update(method=method, seed=split_seed)
    if epochs is not None:
        data["student"]["epochs"] = epochs
    if method == "kd":
        data["student"]["kd"] = {**data["student"].get("kd", {}), "alpha": alpha, "temperature": temperature}
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, root / "outputs" / data["name"]


def build_split(project: Path, workdir: Path, split_seed: int, eval_fraction: float) -> Path:
    """Rebuild the datasets of the source run with this split's seed; returns the split's run folder."""
    from synthdistill import build
    from synthdistill.config import load_config

    source = load_config(project).run_dir
    path, run = write_project(project, workdir / f"split-{split_seed}", split_seed, eval_fraction, "kd", 0.5, 1.0)
    shutil.rmtree(run, ignore_errors=True)
    (run / "harvest").mkdir(parents=True)
    shutil.copytree(source / "filtered", run / "filtered")
    shutil.copytree(source / "student-init", run / "student-init")
    if (source / "harvest" / "decision.json").exists():
        shutil.copy(source / "harvest" / "decision.json", run / "harvest" / "decision.json")
    build.run(load_config(path))
    return run


def run_variant(project: Path, split_run: Path, split_seed: int, eval_fraction: float, variant, epochs=None) -> dict:
    """Train and evaluate one variant on one split's datasets; returns its metrics."""
    from synthdistill import evaluate, train
    from synthdistill.config import load_config

    method, alpha, temperature = variant
    label = variant_label(*variant)
    root = split_run.parent.parent / label
    shutil.rmtree(root, ignore_errors=True)
    path, run = write_project(project, root, split_seed, eval_fraction, method, alpha, temperature, epochs)
    (run / "harvest").mkdir(parents=True)
    for part in ("datasets", "student-init", "harvest/decision.json"):
        if (split_run / part).exists():
            (run / part).symlink_to(split_run / part)  # read-only inputs, shared by the split's variants
    config = load_config(path)
    summary = train.run(config)
    result = evaluate.run(config)
    return {
        "split": split_seed,
        "label": label,
        "steps": summary.steps,
        "train_seconds": summary.seconds,
        "examples": result["examples"],
        "answer_tokens": result["trained"]["answer_tokens"],
        "untrained": result["untrained"],
        "trained": result["trained"],
    }


def markdown_report(results: list[dict]) -> str:
    """Per-split rows, means over splits, and each KD variant paired with SFT on the same split."""
    labels = list(dict.fromkeys(r["label"] for r in results))
    splits = sorted({r["split"] for r in results})
    by = {(r["split"], r["label"]): r for r in results}
    head = "| split | held-out convs / tokens | student | steps | " + " | ".join(m[1] for m in METRICS) + " |"
    lines = [head, "|---" * (4 + len(METRICS)) + "|"]
    for split in splits:
        first = by[(split, labels[0])]
        rows = [("untrained", first["untrained"], 0)] + [
            (lab, by[(split, lab)]["trained"], by[(split, lab)]["steps"]) for lab in labels
        ]
        for name, metrics, steps in rows:
            values = " | ".join(f"{metrics[key]:.4f}" for key, _, _ in METRICS)
            lines.append(f"| {split} | {first['examples']} / {first['answer_tokens']} | {name} | {steps} | {values} |")
    lines += ["", "Mean over splits, and all held-out tokens pooled (agreeing / scored):", ""]
    lines.append("| student | " + " | ".join(m[1] for m in METRICS) + " | pooled top-1 agreement |")
    lines.append("|---" * (2 + len(METRICS)) + "|")
    for name in ["untrained", *labels]:
        side = "untrained" if name == "untrained" else "trained"
        label = labels[0] if name == "untrained" else name
        means = [statistics.mean(by[(s, label)][side][key] for s in splits) for key, _, _ in METRICS]
        tokens = sum(by[(s, label)]["answer_tokens"] for s in splits)
        agree = sum(round(by[(s, label)][side]["top1_agreement"] * by[(s, label)]["answer_tokens"]) for s in splits)
        lines.append(f"| {name} | " + " | ".join(f"{m:.4f}" for m in means) + f" | {agree} / {tokens} |")
    if "sft" in labels:
        lines += ["", "Paired with SFT on the same split (KD − SFT; wins = splits where KD is better):", ""]
        lines.append("| student | " + " | ".join(f"Δ {m[1]} (mean ± sd), wins" for m in METRICS) + " |")
        lines.append("|---" * (1 + len(METRICS)) + "|")
        for label in (lab for lab in labels if lab != "sft"):
            cells = []
            for key, _, sign in METRICS:
                deltas = [by[(s, label)]["trained"][key] - by[(s, "sft")]["trained"][key] for s in splits]
                wins = sum(1 for d in deltas if d * sign > 0)
                spread = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
                cells.append(f"{statistics.mean(deltas):+.4f} ± {spread:.4f}, {wins}/{len(splits)}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, float, float]:
    """`kd:0.5:1.0` or `sft` → (method, alpha, temperature)."""
    method, *rest = text.split(":")
    alpha = float(rest[0]) if rest else 0.5
    temperature = float(rest[1]) if len(rest) > 1 else 1.0
    return method, alpha, temperature


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_PROJECT, help="distill.yaml of a finished run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/synthdistill-quality"))
    parser.add_argument("--variant", action="append", help="method[:alpha[:temperature]]; default: sft, kd:0.5:1.0")
    parser.add_argument("--splits", type=int, default=5, help="held-out splits (datasets.seed 0..N-1)")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="share of prompts held out per split")
    parser.add_argument("--epochs", type=float, help="override student.epochs (default: the project's)")
    parser.add_argument("--first-split", type=int, default=0, help="start at this split seed")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--report", type=Path, help="only print the report of results written by --json")
    args = parser.parse_args(argv)
    if args.report:
        print(markdown_report(json.loads(args.report.read_text())))
        return 0
    variants = [parse_variant(v) for v in (args.variant or ["sft", "kd:0.5:1.0"])]
    project = args.project.resolve()
    results = []
    for split_seed in range(args.first_split, args.first_split + args.splits):
        split_run = build_split(project, args.workdir, split_seed, args.eval_fraction)
        for variant in variants:
            results.append(run_variant(project, split_run, split_seed, args.eval_fraction, variant, args.epochs))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
