"""Does the KD student learn more from the teacher than the SFT student? (issue 7)

Copies a finished quickstart run (datasets, pruned student-init, policy decision) into a
scratch folder once per variant, trains the student there with `train_student` and scores
it with `evaluate_student` (held-out teacher answers: NLL per token, top-1 agreement with
the teacher, KL on KD positions). Every variant uses the project's own seed, learning rate,
batch size and epochs, so the methods see the same steps; only method/alpha/temperature vary.

    python benchmarks/quality.py                       # KD (alpha 0.5, T 1) vs SFT
    python benchmarks/quality.py --variant kd:0.0:1.0  # method:alpha:temperature, repeatable
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PROJECT = REPO / "examples" / "quickstart" / "distill.yaml"


def scratch_project(project: Path, workdir: Path, label: str, method: str, alpha: float, temperature: float) -> Path:
    """A copy of the project whose run folder (under `workdir`) holds the source run's datasets and student-init."""
    from synthdistill.config import load_config

    source = load_config(project).run_dir
    root = workdir / label
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for folder in ("prompts", "policies"):
        if (project.parent / folder).is_dir():
            shutil.copytree(project.parent / folder, root / folder)
    data = yaml.safe_load(project.read_text())
    data["output_dir"] = "outputs"
    data["student"].update(method=method)
    data["student"]["kd"] = {**data["student"].get("kd", {}), "alpha": alpha, "temperature": temperature}
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    run = root / "outputs" / data["name"]
    for part in ("datasets", "student-init"):
        shutil.copytree(source / part, run / part)
    (run / "harvest").mkdir()
    if (source / "harvest" / "decision.json").exists():
        shutil.copy(source / "harvest" / "decision.json", run / "harvest" / "decision.json")
    return path


def run_variant(project: Path, workdir: Path, method: str, alpha: float, temperature: float) -> dict:
    """Train and evaluate one variant; returns its metrics."""
    from synthdistill.config import load_config
    from synthdistill.evaluate import evaluate_student
    from synthdistill.train import train_student

    label = f"{method}-a{alpha:g}-t{temperature:g}" if method == "kd" else "sft"
    config = load_config(scratch_project(project, workdir, label, method, alpha, temperature))
    started = time.perf_counter()
    summary = train_student(config)
    result = evaluate_student(config)
    return {
        "label": label,
        "method": method,
        "alpha": alpha if method == "kd" else None,
        "temperature": temperature if method == "kd" else None,
        "steps": summary.steps,
        "train_seconds": summary.seconds,
        "seconds": round(time.perf_counter() - started, 1),
        "untrained": result["untrained"],
        "trained": result["trained"],
        "examples": result["examples"],
    }


def markdown_table(results: list[dict]) -> str:
    """One row per variant plus the untrained student."""
    lines = [
        "| student | steps | NLL/token ↓ | top-1 agreement ↑ | KL(teacher‖student) ↓ | train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    untrained = results[0]["untrained"]
    lines.append(
        f"| untrained (pruned init) | 0 | {untrained['nll_per_token']:.4f} | {untrained['top1_agreement']:.4f} "
        f"| {untrained['kd_kl']:.4f} | – |"
    )
    for r in results:
        m = r["trained"]
        lines.append(
            f"| {r['label']} | {r['steps']} | {m['nll_per_token']:.4f} | {m['top1_agreement']:.4f} "
            f"| {m['kd_kl']:.4f} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def parse_variant(text: str) -> tuple[str, float, float]:
    """`kd:0.5:1.0` or `sft` → (method, alpha, temperature)."""
    method, *rest = text.split(":")
    alpha = float(rest[0]) if rest else 0.5
    temperature = float(rest[1]) if len(rest) > 1 else 1.0
    return method, alpha, temperature


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--project", type=Path, default=DEFAULT_PROJECT, help="distill.yaml of a run that has built datasets"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/synthdistill-quality"))
    parser.add_argument("--variant", action="append", help="method[:alpha[:temperature]]; default: kd:0.5:1.0 and sft")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in (args.variant or ["kd:0.5:1.0", "sft"])]
    results = []
    for method, alpha, temperature in variants:
        results.append(run_variant(args.project.resolve(), args.workdir, method, alpha, temperature))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(markdown_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
