"""How fast does the in-process (embedded) teacher answer? (issue 19, point 5)

Runs the quickstart's teacher (SmolLM2-135M-Instruct, in-process) on the quickstart pack's
first N prompts, exactly as the harvest asks it (top-20 logprobs, temperature 0.7, seed 0,
max_tokens 96, all N requests in flight so every batch is full), once per variant, and
interleaves the variants over several rounds so a shared machine's load falls on all of them
alike. A variant is a code tree (this one, or a baseline checkout given by --baseline) and a
`teacher.batch_size`. Each run is its own process; the model load is not timed.

    python benchmarks/embedded_teacher.py --baseline /tmp/base --prompts 64 --rounds 3 \\
        --variant base:8 --variant base:32 --variant new:8 --variant new:32 --variant new:64:bfloat16 --json out.json

Prints answer tokens per second per run, the median per variant, and whether each variant's
answers are the same as the first variant's (per-row reproducibility: a row's sample must not
depend on its batch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "examples" / "quickstart" / "distill.yaml"


def child(batch_size: int, prompts: int, dtype: str | None = None) -> dict:
    """Answer the first `prompts` requests of the quickstart with this tree's teacher; timings and answers."""
    import asyncio

    from synthdistill.config import load_config
    from synthdistill.packs import configured_prompts

    try:
        from synthdistill.harvest_plan import plan_requests
    except ImportError:  # a baseline from before harvest_plan.py
        from synthdistill.harvest import plan_requests
    from synthdistill.teachers import make_teacher

    config = load_config(PROJECT)
    requests = [item.request for item in plan_requests(config, configured_prompts(config, prompts))]
    update = {"batch_size": batch_size, **({"dtype": dtype} if dtype else {})}
    teacher = make_teacher(config.teacher.model_copy(update=update), project_dir=config.project_dir)

    async def ask_all():
        # loaded as a harvest loads it, off the main thread (where the tree's own teacher does), not timed
        await getattr(teacher, "in_model_thread", asyncio.to_thread)(teacher._load)
        started = time.perf_counter()
        try:
            return await asyncio.gather(*(teacher.complete(r) for r in requests)), time.perf_counter() - started
        finally:
            await teacher.aclose()

    answers, seconds = asyncio.run(ask_all())
    tokens = sum(a.usage.completion_tokens for a in answers)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the model and its answers
    return {"seconds": seconds, "answer_tokens": tokens, "peak_rss_mib": peak_mib, "texts": [a.text for a in answers]}


def run_variant(tree: Path, batch_size: int, prompts: int, dtype: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    dtype_args = ["--dtype", dtype] if dtype else []
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(batch_size), "--prompts", str(prompts)]
        + dtype_args,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="a checkout of the baseline code (e.g. git worktree add)")
    parser.add_argument("--variant", action="append", help="tree:batch_size, tree = new | base (default new:8)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.prompts, args.dtype)))
        return 0
    # tree:batch_size[:dtype] (dtype: teacher.dtype, this tree only; the baseline may not know it)
    variants = [(v.split(":") + [None])[:3] for v in (args.variant or ["new:8"])]
    trees = {"new": REPO, "base": args.baseline}
    runs: dict[str, list[dict]] = {":".join(filter(None, v)): [] for v in variants}
    for round_index in range(args.rounds):
        for tree, batch, dtype in variants:
            name = ":".join(filter(None, (tree, batch, dtype)))
            load_before = os.getloadavg()[0]
            result = run_variant(trees[tree], int(batch), args.prompts, dtype)
            result["load_1min"] = [load_before, os.getloadavg()[0]]  # before and after: the machine's other work
            runs[name].append(result)
            rate = result["answer_tokens"] / result["seconds"]
            print(
                f"round {round_index} {name}: {result['answer_tokens']} tokens in {result['seconds']:.1f} s = {rate:.1f} tok/s"
                f" (load {result['load_1min'][0]:.1f} -> {result['load_1min'][1]:.1f})",
                flush=True,
            )
    first = next(iter(runs.values()))[0]["texts"]
    print(
        "\n| variant | runs | answer tokens/s (median) | min–max | peak RSS MiB (max) "
        "| answers equal to the first variant's |"
    )
    print("|---|---|---|---|---|---|")
    for name, results in runs.items():
        rates = [r["answer_tokens"] / r["seconds"] for r in results]
        same = sum(a == b for a, b in zip(results[0]["texts"], first))
        peak = max(r["peak_rss_mib"] for r in results)
        print(
            f"| {name} | {len(rates)} | {statistics.median(rates):.1f} | {min(rates):.1f}–{max(rates):.1f} | {peak:,.0f} "
            f"| {same}/{len(first)} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"prompts": args.prompts, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
