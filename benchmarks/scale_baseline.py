"""Benchmark: filter and build of this tree against a baseline commit, interleaved on one ledger.

    .venv/bin/python benchmarks/scale_baseline.py --baseline 17dc1b9 --records 10000 --rounds 2

One ledger of `--records` scale records (benchmarks/scale_records.py); then, round after round,
the baseline's and this tree's `filter` and `build` with 1 and 2 workers, the order of the two
alternating between rounds, so both see the same machine. The baseline runs from a
`git worktree` of the commit with this venv. Prints a table (best wall time of each over the
rounds, its peak RSS) and writes benchmarks/results/scale_baseline-<date>-<baseline>.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import RESULTS, fill_ledger, run_measured, write_project  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scale-baseline-"))
    baseline = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline], check=True)
    try:
        project = work / "project"
        project.mkdir()
        config = write_project(project, args.records)
        fill_ledger(config, args.records, processes=2)
        runs = []
        for round_ in range(args.rounds):
            order = [("baseline", baseline), ("this tree", None)]
            for name, code in order if round_ % 2 == 0 else order[::-1]:
                for workers in (1, 2):
                    for stage in ("filter", "build"):
                        wall, rss = run_measured([stage, "-c", str(config), "--workers", str(workers)], project, code)
                        runs.append(
                            {
                                "round": round_,
                                "code": name,
                                "stage": stage,
                                "workers": workers,
                                "wall_s": round(wall, 1),
                                "peak_rss_mib": round(rss / 2**20),
                                "load_average": round(os.getloadavg()[0], 1),
                            }
                        )
                        print(json.dumps(runs[-1]), flush=True)
        report(args, runs)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def report(args, runs: list[dict]) -> None:
    day = dt.date.today().isoformat()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    best = {}
    for r in runs:
        key = (r["stage"], r["workers"], r["code"])
        if key not in best or r["wall_s"] < best[key]["wall_s"]:
            best[key] = r
    lines = [
        f"# filter and build against {args.baseline}, {day}",
        "",
        f"Machine: {machine}. {args.records:,} scale records (128 answer tokens, top-20), one ledger; "
        f"{args.rounds} interleaved rounds (benchmarks/scale_baseline.py). Best wall time of each over the rounds; "
        f"load average during the runs {min(r['load_average'] for r in runs)}-{max(r['load_average'] for r in runs)}.",
        "",
        "| stage | workers | baseline s | this tree s | baseline / this tree | baseline peak RSS MiB | this tree MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in ("filter", "build"):
        for workers in (1, 2):
            old, new = best[(stage, workers, "baseline")], best[(stage, workers, "this tree")]
            lines.append(
                f"| {stage} | {workers} | {old['wall_s']} | {new['wall_s']} | {old['wall_s'] / new['wall_s']:.2f}x "
                f"| {old['peak_rss_mib']:,} | {new['peak_rss_mib']:,} |"
            )
    for stage in ("filter", "build"):
        old = min(best[(stage, w, "baseline")]["wall_s"] for w in (1, 2))
        new = min(best[(stage, w, "this tree")]["wall_s"] for w in (1, 2))
        lines.append(f"\n{stage}, each at its best number of workers: {old} s vs {new} s ({old / new:.2f}x).")
    name = f"scale_baseline-{day}-{args.baseline}"
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"machine": machine, "baseline": args.baseline, "records": args.records, "runs": runs}, indent=2)
        + "\n"
    )
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
