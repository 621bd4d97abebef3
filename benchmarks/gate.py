"""Benchmark: the licence gate over the table of real model ids (tests/data/policy_ids.csv).

    .venv/bin/python benchmarks/gate.py             # writes benchmarks/results/gate-<date>.md
    .venv/bin/python benchmarks/gate.py --no-write  # print only

Prints, for the shipped policies and the default use (commercial, distributed, not
competing, no attestation), how many ids of the table each outcome and each deciding
policy covers, whether each decision agrees with the table, and the time of one
decision: loading the policies once (what `policy check` pays at start), and
`evaluate` alone per id (median and worst over every id, several rounds). Target:
one decision well under 50 ms, so `policy check` stays instant.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthdistill.config import UseConfig  # noqa: E402
from synthdistill.policy import evaluate, load_policies  # noqa: E402

TABLE = ROOT / "tests" / "data" / "policy_ids.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    rows = list(csv.DictReader(TABLE.open(newline="", encoding="utf-8")))
    started = time.perf_counter()
    policies = load_policies(None)
    load_ms = (time.perf_counter() - started) * 1000
    use = UseConfig()

    per_call: list[float] = []
    outcomes: Counter[str] = Counter()
    deciding: Counter[str] = Counter()
    agree = 0
    for round_index in range(args.rounds):
        for row in rows:
            urls = [row["base_url"]] if row["base_url"] else []
            t0 = time.perf_counter()
            decision = evaluate(policies, row["model"], urls, use)
            per_call.append((time.perf_counter() - t0) * 1000)
            if round_index == 0:
                outcomes[decision.outcome] += 1
                deciding[decision.policy_id or "(none)"] += 1
                agree += decision.outcome == row["outcome"]

    lines = [
        f"# Gate benchmark — {dt.date.today().isoformat()}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{len(policies)} shipped policies, {len(rows)} model ids from tests/data/policy_ids.csv; "
        f"default use (commercial, distributed, not competing, no attestation). "
        f"Load average at the end: {os.getloadavg()[0]:.2f} (1 min).",
        "",
        "| outcome | ids |",
        "|---|---|",
        *[f"| {outcome} | {n} |" for outcome, n in outcomes.most_common()],
        "",
        f"Outcomes that agree with the table: {agree} of {len(rows)}.",
        "",
        "| deciding policy | ids |",
        "|---|---|",
        *[f"| {policy} | {n} |" for policy, n in sorted(deciding.items(), key=lambda kv: (-kv[1], kv[0]))],
        "",
        "| timing | ms |",
        "|---|---|",
        f"| load and validate every shipped policy (once per process) | {load_ms:.1f} |",
        f"| one decision (`evaluate`), median over {len(per_call)} | {statistics.median(per_call):.3f} |",
        f"| one decision, worst | {max(per_call):.3f} |",
        f"| load + one decision (what `policy check` pays) | {load_ms + statistics.median(per_call):.1f} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        out = ROOT / "benchmarks" / "results" / f"gate-{dt.date.today().isoformat()}.md"
        out.write_text(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
