"""Does the KD student learn more from the teacher than the SFT student? And do the feature and
relation parts add to KD? (issues 7 and 17)

Takes a finished quickstart run (its kept records, pruned student-init and policy decision)
and, for each of several held-out splits, rebuilds the datasets with that split's seed
(`datasets.seed`, and the same `student.seed`), then trains one student per variant with
`train_student` and scores it with `evaluate_student` on that split's held-out teacher answers
(NLL per token, top-1 agreement with the teacher, KL on KD positions; the teacher itself is
scored the same way, giving each student's share of the NLL gap it closes). Within a split
every variant uses the same data, seed, learning rate, batch size and epochs, so the methods
see the same steps; only the loss varies. The report pairs each variant with `sft` and with the
baseline (`kd` by default) on the same split and counts the splits it wins.

Variants: `sft`; `kd` (the project's own kd settings: the quickstart's alpha 0.5, T 1, tail
bucket); `kd+features`, `kd+relations`, `kd+features+relations` (kd plus the feature / relation
parts against the local teacher, settings from --features-* / --relations-*); any of the kd
ones with `:alpha[:temperature]` (e.g. `kd:0.0:1.0`, labelled `kd-a0-t1`).

Each (split, variant) trains and evaluates in a fresh child process, so its peak RSS
(`ru_maxrss` read right after training, before evaluation) is that variant's alone. With
--json the results are written after each one, and a rerun with the same --json skips the
(split, variant) pairs already there, so a crash loses at most the pair in flight.

    python benchmarks/quality.py --json out.json               # 5 splits, the five variants
    python benchmarks/quality.py --variant sft --variant kd:0.0:1.0 --splits 3
    python benchmarks/quality.py --report out.json              # reprint the report
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PROJECT = REPO / "synthdistill" / "data" / "examples" / "quickstart" / "distill.yaml"
METRICS = (("nll_per_token", "NLL/token ↓", -1), ("top1_agreement", "top-1 agreement ↑", 1), ("kd_kl", "KL ↓", -1))
DEFAULT_VARIANTS = ("sft", "kd", "kd+features", "kd+relations", "kd+features+relations")
PARTS = ("features", "relations")


def parse_variant(text: str) -> dict:
    """`sft`, `kd`, `kd+features+relations`, `kd:0.5:1.0` → {label, method, alpha, temperature, parts}."""
    name, *rest = text.split(":")
    method, *parts = name.split("+")
    if method not in ("sft", "kd") or any(p not in PARTS for p in parts) or (method == "sft" and (parts or rest)):
        raise SystemExit(f"unknown variant {text!r}: sft, or kd[+features][+relations][:alpha[:temperature]]")
    alpha = float(rest[0]) if rest else None
    temperature = float(rest[1]) if len(rest) > 1 else (1.0 if rest else None)
    label = name if alpha is None else f"{name}-a{alpha:g}-t{temperature:g}"
    return {"label": label, "method": method, "alpha": alpha, "temperature": temperature, "parts": parts}


def write_project(source_yaml: Path, root: Path, split_seed: int, eval_fraction: float, variant=None, extra=None):
    """A copy of the project under `root` with this split's seeds and this variant's loss (and epochs)."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("prompts", "policies"):
        if (source_yaml.parent / folder).is_dir() and not (root / folder).exists():
            shutil.copytree(source_yaml.parent / folder, root / folder)
    data = yaml.safe_load(source_yaml.read_text())
    data["output_dir"] = "outputs"
    data["datasets"] = {**data.get("datasets", {}), "seed": split_seed, "eval_fraction": eval_fraction}
    data["student"]["seed"] = split_seed
    data["student"]["eval_samples"] = 0  # the greedy sample answers are for the view; they take minutes on a CPU
    # nor does the report read teacher_nll_on_student_samples (benchmarks/on_policy.py measures it): each
    # model would sample 16 answers of up to 128 tokens for the teacher to score, minutes per pair
    data["student"]["on_policy"] = {**data["student"].get("on_policy", {}), "eval_prompts": 0}
    extra = extra or {}
    if extra.get("epochs") is not None:
        data["student"]["epochs"] = extra["epochs"]
    if variant is not None:
        data["student"]["method"] = variant["method"]
        kd = {k: v for k, v in data["student"].get("kd", {}).items() if k not in PARTS}
        if variant["alpha"] is not None:
            kd.update(alpha=variant["alpha"], temperature=variant["temperature"])
        for part in variant["parts"]:
            kd[part] = extra[part]
        data["student"]["kd"] = kd
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, root / "outputs" / data["name"]


def build_split(project: Path, workdir: Path, split_seed: int, eval_fraction: float) -> Path:
    """Rebuild the datasets of the source run with this split's seed; returns the split's run folder."""
    from synthdistill import build
    from synthdistill.config import load_config

    source = load_config(project).run_dir
    path, run = write_project(project, workdir / f"split-{split_seed}", split_seed, eval_fraction)
    shutil.rmtree(run, ignore_errors=True)
    (run / "harvest").mkdir(parents=True)
    shutil.copytree(source / "filtered", run / "filtered")
    shutil.copytree(source / "student-init", run / "student-init")
    if (source / "harvest" / "decision.json").exists():
        shutil.copy(source / "harvest" / "decision.json", run / "harvest" / "decision.json")
    build.run(load_config(path))
    return run


def run_variant(project: Path, split_run: Path, split_seed: int, eval_fraction: float, variant, extra) -> dict:
    """Train and evaluate one variant on one split's datasets (in this process); returns its metrics."""
    import resource

    from synthdistill import evaluate, train
    from synthdistill.config import load_config

    root = split_run.parent.parent / variant["label"]
    shutil.rmtree(root, ignore_errors=True)
    path, run = write_project(project, root, split_seed, eval_fraction, variant, extra)
    (run / "harvest").mkdir(parents=True)
    for part in ("datasets", "student-init", "harvest/decision.json"):
        if (split_run / part).exists():
            (run / part).symlink_to(split_run / part)  # read-only inputs, shared by the split's variants
    config = load_config(path)
    summary = train.run(config)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB; this process trained only this
    result = evaluate.run(config)
    kd = config.student.kd
    return {
        "split": split_seed,
        "label": variant["label"],
        "method": variant["method"],
        "loss_weights": summary.loss_weights,
        "features": kd.features.model_dump() if kd.features and variant["method"] == "kd" else None,
        "relations": kd.relations.model_dump() if kd.relations and variant["method"] == "kd" else None,
        "steps": summary.steps,
        "train_seconds": summary.seconds,
        "step_seconds": round(summary.seconds / summary.steps, 3) if summary.steps else None,
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "loss_parts": summary.loss_parts,
        "local_teacher": summary.local_teacher,
        "examples": result["examples"],
        "answer_tokens": result["trained"]["answer_tokens"],
        "untrained": result["untrained"],
        "trained": result["trained"],
        "teacher": result.get("teacher"),
        "nll_gap_closed": result.get("nll_gap_closed"),
    }


def run_variant_in_child(split_run: Path, split_seed: int, args, variant, extra) -> dict:
    """`run_variant` in a fresh Python process (its own peak RSS); raises if the child fails."""
    job = {
        "project": str(args.project.resolve()),
        "split_run": str(split_run),
        "split": split_seed,
        "eval_fraction": args.eval_fraction,
        "variant": variant,
        "extra": extra,
    }
    out = split_run.parent.parent / f"{variant['label']}.result.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job), "--child-out", str(out)]
    subprocess.run(command, check=True, env=env)
    return json.loads(out.read_text())


def child_main(job_text: str, out: Path) -> int:
    job = json.loads(job_text)
    result = run_variant(
        Path(job["project"]), Path(job["split_run"]), job["split"], job["eval_fraction"], job["variant"], job["extra"]
    )
    out.write_text(json.dumps(result) + "\n")
    return 0


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def paired_table(by: dict, labels: list[str], baseline: str) -> list[str]:
    """Each other label minus `baseline`, split by split (where both finished): mean ± sd and splits won."""
    lines = [f"Paired with {baseline} on the same split (variant − {baseline}; wins = splits where it is better):"]
    lines += ["", "| student | " + " | ".join(f"Δ {m[1]} (mean ± sd), wins" for m in METRICS) + " |"]
    lines.append("|---" * (1 + len(METRICS)) + "|")
    for label in (lab for lab in labels if lab != baseline):
        splits = sorted(s for s, lab in by if lab == label and (s, baseline) in by)
        if not splits:
            continue
        cells = []
        for key, _, sign in METRICS:
            deltas = [by[(s, label)]["trained"][key] - by[(s, baseline)]["trained"][key] for s in splits]
            wins = sum(1 for d in deltas if d * sign > 0)
            spread = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
            cells.append(f"{statistics.mean(deltas):+.4f} ± {spread:.4f}, {wins}/{len(splits)}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def split_rows(by: dict, labels: list[str], split: int) -> list[str]:
    """The per-split table's rows: untrained, teacher, then each variant that finished on this split."""
    first = next(by[(split, lab)] for lab in labels if (split, lab) in by)
    rows = [("untrained", first["untrained"], 0, 0.0)]
    if first.get("teacher"):
        rows.append(("teacher", first["teacher"], 0, 1.0))
    for lab in (lab for lab in labels if (split, lab) in by):
        rows.append(
            (lab, by[(split, lab)]["trained"], by[(split, lab)]["steps"], by[(split, lab)].get("nll_gap_closed"))
        )
    lines = []
    for name, metrics, steps, gap in rows:
        values = " | ".join(_fmt(metrics.get(key), ".4f") for key, _, _ in METRICS)
        where = f"| {split} | {first['examples']} / {first['answer_tokens']} | {name} | {steps} | {values}"
        lines.append(where + f" | {_fmt(gap, '.3f')} |")
    return lines


def means_table(by: dict, labels: list[str], splits: list[int]) -> list[str]:
    """Means over `splits` (every variant finished on each), and top-1 agreement over all their tokens pooled."""
    lines = [f"Mean over the {len(splits)} splits where every variant finished, and all held-out tokens pooled:"]
    lines += ["", "| student | " + " | ".join(m[1] for m in METRICS) + " | gap closed | pooled top-1 agreement |"]
    lines.append("|---" * (3 + len(METRICS)) + "|")
    names = ["untrained"] + (["teacher"] if by[(splits[0], labels[0])].get("teacher") else []) + labels
    for name in names:
        side = name if name in ("untrained", "teacher") else "trained"
        label = labels[0] if side != "trained" else name
        means = [statistics.mean(by[(s, label)][side][key] for s in splits) for key, _, _ in METRICS]
        gaps = [by[(s, label)].get("nll_gap_closed") for s in splits] if side == "trained" else [None]
        gap = statistics.mean(gaps) if None not in gaps else {"untrained": 0.0, "teacher": 1.0}.get(side)
        tokens = sum(by[(s, label)][side]["answer_tokens"] for s in splits)
        agree = sum(
            round(by[(s, label)][side]["top1_agreement"] * by[(s, label)][side]["answer_tokens"]) for s in splits
        )
        cells = " | ".join(f"{m:.4f}" for m in means)
        lines.append(f"| {name} | {cells} | {_fmt(gap, '.3f')} | {agree} / {tokens} |")
    return lines


def cost_table(by: dict, labels: list[str]) -> list[str]:
    """Steps, seconds per optimizer step, peak RSS and the local teacher's forward time, per variant."""
    lines = ["Cost per variant (mean over the splits it finished; peak RSS of its training process, ru_maxrss):"]
    lines += ["", "| student | splits | steps | s / step | train s | peak RSS MiB | teacher forwards s |"]
    lines.append("|---" * 7 + "|")
    for label in labels:
        rows = [r for (s, lab), r in sorted(by.items()) if lab == label]
        teacher_s = [(r.get("local_teacher") or {}).get("forward_seconds_total") for r in rows]
        cells = [
            f"{len(rows)}",
            f"{statistics.mean(r['steps'] for r in rows):g}",
            f"{statistics.mean(r['step_seconds'] for r in rows):.2f}",
            f"{statistics.mean(r['train_seconds'] for r in rows):.0f}",
            f"{statistics.mean(r['peak_rss_mib'] for r in rows):.0f}",
            "—" if None in teacher_s else f"{statistics.mean(teacher_s):.0f}",
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(results: list[dict], baseline: str = "kd") -> str:
    """Per-split rows, means over complete splits, cost, and each variant paired with SFT and the baseline."""
    labels = list(dict.fromkeys(r["label"] for r in results))
    by = {(r["split"], r["label"]): r for r in results}
    splits = sorted({r["split"] for r in results})
    head = "| split | held-out convs / tokens | student | steps | " + " | ".join(m[1] for m in METRICS)
    lines = [head + " | gap closed |", "|---" * (5 + len(METRICS)) + "|"]
    for split in splits:
        lines += split_rows(by, labels, split)
    complete = [s for s in splits if all((s, lab) in by for lab in labels)]
    if complete:
        lines += [""] + means_table(by, labels, complete)
    if all("step_seconds" in r for r in results):
        lines += [""] + cost_table(by, labels)
    for reference in dict.fromkeys(("sft", baseline)):
        if reference in labels and len(labels) > 1:
            lines += [""] + paired_table(by, labels, reference)
    missing = [f"({s}, {lab})" for s in splits for lab in labels if (s, lab) not in by]
    if missing:
        lines += ["", "Not finished: " + ", ".join(missing)]
    return "\n".join(lines)


def part_settings(args) -> dict:
    """The feature and relation parts' config, as the variants that use them get it."""
    features = {"layers": "auto", "loss": args.features_loss, "weight": args.features_weight}
    relations = {"source": "teacher-hidden", "loss": args.relations_loss, "weight": args.relations_weight}
    return {"epochs": args.epochs, "features": features, "relations": relations}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=DEFAULT_PROJECT, help="distill.yaml of a finished run")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/synthdistill-quality"))
    parser.add_argument("--variant", action="append", help=f"default: {', '.join(DEFAULT_VARIANTS)}")
    parser.add_argument("--baseline", default="kd", help="the variant every other one is also paired with")
    parser.add_argument("--splits", type=int, default=5, help="held-out splits (datasets.seed 0..N-1)")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="share of prompts held out per split")
    parser.add_argument("--epochs", type=float, help="override student.epochs (default: the project's)")
    parser.add_argument("--first-split", type=int, default=0, help="start at this split seed")
    parser.add_argument("--features-loss", default="cosine", choices=("cosine", "mse"))
    parser.add_argument("--features-weight", type=float, default=1.0)
    parser.add_argument("--relations-loss", default="distance+angle", choices=("distance", "angle", "distance+angle"))
    parser.add_argument("--relations-weight", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="write the results here (after each one); a rerun skips those done")
    parser.add_argument("--report", type=Path, help="only print the report of results written by --json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child, args.child_out)
    if args.report:
        print(markdown_report(json.loads(args.report.read_text()), args.baseline))
        return 0
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    extra = part_settings(args)
    project = args.project.resolve()
    results = json.loads(args.json.read_text()) if args.json and args.json.exists() else []
    done = {(r["split"], r["label"]) for r in results}
    for split_seed in range(args.first_split, args.first_split + args.splits):
        todo = [v for v in variants if (split_seed, v["label"]) not in done]
        if not todo:
            continue
        split_run = build_split(project, args.workdir, split_seed, args.eval_fraction)
        for variant in todo:
            print(f"quality: split {split_seed}, {variant['label']}", file=sys.stderr, flush=True)
            try:
                results.append(run_variant_in_child(split_run, split_seed, args, variant, extra))
            except subprocess.CalledProcessError as error:  # the others still run; a rerun retries this one
                print(f"quality: split {split_seed}, {variant['label']} failed: {error}", file=sys.stderr, flush=True)
                continue
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
            if args.json:
                partial = args.json.with_name(args.json.name + ".partial")
                partial.write_text(json.dumps(results, indent=2) + "\n")
                partial.replace(args.json)
    print(markdown_report(results, args.baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
