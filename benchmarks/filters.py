"""Benchmark: the full filter pipeline over synthetic records, records/s per filter.

    .venv/bin/python benchmarks/filters.py                    # 200,000 records, writes benchmarks/results/filters-<date>.md
    .venv/bin/python benchmarks/filters.py --records 5000 --no-write   # a quick look

The records are synthetic answers drawn from a 3,000-word vocabulary (40–120 words,
ending in "Answer: N"), with known shares of truncated, refusing, too short,
repetitive, duplicated, near-duplicated, low-confidence, wrong, contaminated and
PII-holding answers, so every filter has work to do. Filters run as `synthdistill
filter` runs them (one process; the pipeline is single-threaded). A second timing
runs near-dedup alone over all records, the case the 5-minute target is about.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthdistill.config import FilterSpec  # noqa: E402
from synthdistill.filters import resolve_step, run_filters  # noqa: E402
from synthdistill.filters.dedup import DedupParams, dedup  # noqa: E402
from synthdistill.records import HarvestRecord, Message, Sampling, Usage  # noqa: E402

PIPELINE = [
    FilterSpec(name="finished"),
    FilterSpec(name="refusal"),
    FilterSpec(name="length", params={"min_chars": 1, "max_tokens": 4096}),
    FilterSpec(name="repetition", params={"max_repeated_ngram_fraction": 0.3}),
    FilterSpec(name="dedup", params={"exact": True, "near_threshold": 0.9}),
    FilterSpec(name="confidence", params={"min_mean_logprob": -2.5}),
    FilterSpec(name="verify"),
    FilterSpec(name="decontaminate", params={"against": ["heldout.jsonl"], "ngram": 13}),
    FilterSpec(name="pii", params={"action": "redact"}),
]
# Shares of each kind of bad answer (the rest are good, distinct answers).
SHARES = {
    "truncated": 0.02,
    "refusal": 0.02,
    "empty": 0.005,
    "repetitive": 0.02,
    "exact-duplicate": 0.05,
    "near-duplicate": 0.03,
    "low-confidence": 0.03,
    "wrong": 0.05,
    "contaminated": 0.01,
    "pii": 0.01,
}
HELD_OUT_ITEMS = 1000


def synthetic_records(count: int, seed: int = 0) -> tuple[list[HarvestRecord], list[tuple[str, str]]]:
    """`count` records with the SHARES of problems, and the held-out texts some of them copy."""
    rng = random.Random(seed)
    vocabulary = [
        f"{rng.choice('bcdfghklmnprstvz')}{rng.choice('aeiou')}{rng.choice('lmnrst')}{i}" for i in range(3000)
    ]
    held_out = [(f"heldout.jsonl:{i + 1}", " ".join(rng.choices(vocabulary, k=30))) for i in range(HELD_OUT_ITEMS)]
    sampling, usage = Sampling(), Usage(prompt_tokens=20, completion_tokens=80)
    good_logprobs = [[rng.uniform(-1.2, 0.0) for _ in range(80)] for _ in range(64)]
    bad_logprobs = [[rng.uniform(-5.0, -2.0) for _ in range(80)] for _ in range(16)]
    kinds = rng.choices(list(SHARES) + ["good"], weights=list(SHARES.values()) + [1 - sum(SHARES.values())], k=count)
    records: list[HarvestRecord] = []
    for i, kind in enumerate(kinds):
        result = rng.randint(1, 10_000)
        body = " ".join(rng.choices(vocabulary, k=rng.randint(40, 120)))
        question = f"Problem {i}: " + " ".join(rng.choices(vocabulary, k=12))
        if kind == "refusal":
            body = "I'm sorry, but I can't help with that. " + body
        elif kind == "empty":
            body = ""
        elif kind == "repetitive":
            body = " ".join(["the loop goes on"] * 30)
        elif kind in ("exact-duplicate", "near-duplicate") and records:
            source = records[rng.randrange(len(records))].text
            body = source.rsplit(" Answer:", 1)[0] + (" indeed" if kind == "near-duplicate" else "")
        elif kind == "contaminated":
            question = held_out[rng.randrange(HELD_OUT_ITEMS)][1]
        elif kind == "pii":
            body += f" Reach me at user{i}@corp.io or +1 415-555-{i % 10000:04d}."
        text = f"{body} Answer: {result}" if kind != "empty" else ""
        logprobs = (bad_logprobs if kind == "low-confidence" else good_logprobs)[i % 16]
        records.append(
            HarvestRecord.model_construct(
                request_key=f"{i:032x}",
                prompt_id=f"{i:016x}",
                pack="bench-math",
                pack_version="1.0.0",
                sample_index=0,
                messages=[Message(role="user", content=question)],
                variables={"answer": result + 1 if kind == "wrong" else result},
                text=text,
                finish_reason="length" if kind == "truncated" else "stop",
                model_requested="teacher",
                model_answered="teacher",
                backend="openai",
                endpoint="127.0.0.1:8000",
                system_fingerprint=None,
                sampling=sampling,
                usage=usage,
                latency_ms=10.0,
                attempts=1,
                harvested_at="2026-11-23T00:00:00+00:00",
                policy_id="bench",
                decision="allow",
                tokens=None,
                token_ids=None,
                token_logprobs=logprobs,
                top_tokens=None,
                top_ids=None,
                top_logprobs=None,
            )
        )
    return records, held_out


def prepared_steps(held_out: list[tuple[str, str]]):
    """The pipeline's steps with their inputs given directly (the stage would read them from files)."""
    steps = []
    for spec in PIPELINE:
        step = resolve_step(spec)
        if spec.name == "verify":
            step = step.__class__(
                step.name,
                step.params.with_verifiers({"bench-math": {"kind": "answer", "field": "answer"}}),
                step.function,
                step.config_params,
            )
        elif spec.name == "decontaminate":
            step = step.__class__(step.name, step.params.with_references(held_out), step.function, step.config_params)
        steps.append(step)
    return steps


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    return (
        f"{cores} cores ({model or platform.processor() or 'unknown CPU'}), no GPU, Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--no-write", action="store_true", help="print the results only")
    args = parser.parse_args(argv)

    import datasketch

    started = time.perf_counter()
    records, held_out = synthetic_records(args.records)
    made = time.perf_counter() - started
    steps = prepared_steps(held_out)

    started = time.perf_counter()
    result = run_filters(records, steps)
    pipeline_seconds = time.perf_counter() - started

    started = time.perf_counter()
    near = dedup(records, DedupParams(exact=False, near_threshold=0.9))
    near_seconds = time.perf_counter() - started
    near_dropped = sum(v is not None for v in near)

    today = dt.date.today().isoformat()
    lines = [
        f"# Filter pipeline benchmark, {today}",
        "",
        f"- Machine: {machine()}. The CPU was shared with other jobs during the run, so rates are a lower bound.",
        f"- Software: datasketch {datasketch.__version__}, MinHash 64 permutations over word 3-grams.",
        f"- Input: {args.records:,} synthetic records (made in {made:.1f} s); `{Path(__file__).name}` regenerates them (seed 0).",
        "- The pipeline runs in one process, as `synthdistill filter` does; each step sees only what the steps before it kept.",
        "",
        "| step | params | records in | kept | dropped | modified | seconds | records/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for step in result.steps:
        rate = step.input / step.seconds if step.seconds else float("inf")
        params = ", ".join(f"{k}={v}" for k, v in step.params.items() if v is not None) or "-"
        lines.append(
            f"| {step.name} | {params} | {step.input:,} | {step.kept:,} | {step.dropped:,} | {step.modified:,} | {step.seconds:.2f} | {rate:,.0f} |"
        )
    lines += [
        f"| **whole pipeline** | | {args.records:,} | {len(result.kept):,} | {len(result.dropped):,} | {len(result.modified):,} | "
        f"{pipeline_seconds:.2f} | {args.records / pipeline_seconds:,.0f} |",
        "",
        f"Near-dedup alone (MinHash LSH, threshold 0.9, exact pass off) over all {args.records:,} records: "
        f"**{near_seconds:.1f} s** ({args.records / near_seconds:,.0f} records/s), {near_dropped:,} near-duplicates; "
        f"target under 300 s: {'met' if near_seconds < 300 else 'NOT met'}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        out = ROOT / "benchmarks" / "results" / f"filters-{today}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
