"""Benchmark: `synthdistill view` on a large run folder: page size, render time, load time in Chromium.

    .venv/bin/python benchmarks/view_size.py                       # 100,000 records, writes benchmarks/results/view_size-<date>.md
    .venv/bin/python benchmarks/view_size.py --records 2000 --no-write
    .venv/bin/python benchmarks/view_size.py --page examples/quickstart/outputs/quickstart/view.html   # also time a page

Synthetic records (`--tokens` answer tokens, each with `--top-k` logprobs) go into a ledger through
`HarvestStore`, and into filtered/kept.parquet and dropped.parquet (10 % dropped) as the filter writes
them; then the view is rendered and loaded in headless Chromium (the system's, through Playwright)
until its script marks the page ready. Targets (issue 21): the page stays under ~20 MB at 100k
records, and the quickstart's page opens in under 2 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synthdistill import view  # noqa: E402
from synthdistill.filtered_io import RecordsWriter  # noqa: E402
from synthdistill.records import DroppedRecord, HarvestRecord, Message, Sampling, Usage  # noqa: E402
from synthdistill.run_layout import RunLayout  # noqa: E402
from synthdistill.safe_write import write_text  # noqa: E402
from synthdistill.store import HarvestStore  # noqa: E402

WORDS = "the a of to and in is it that for on with as was at by this be from or an are not but".split()


def make_record(i: int, tokens: int, top_k: int, rng: random.Random) -> HarvestRecord:
    answer = [(" " if t else "") + rng.choice(WORDS) for t in range(tokens)]
    logprobs = [-rng.random() * 2 for _ in answer]
    return HarvestRecord(
        request_key=f"{i:032x}",
        prompt_id=f"{i:016x}",
        pack=f"pack-{i % 3}",
        pack_version="1.0.0",
        sample_index=0,
        messages=[Message(role="user", content=f"Question number {i}: say something about {rng.choice(WORDS)}.")],
        text="".join(answer),
        finish_reason="stop",
        model_requested="bench-teacher",
        model_answered="bench-teacher",
        backend="openai",
        endpoint="127.0.0.1",
        sampling=Sampling(),
        usage=Usage(prompt_tokens=12, completion_tokens=tokens),
        latency_ms=1.0,
        attempts=1,
        harvested_at="2026-12-01T00:00:00.000+00:00",
        policy_id="bench",
        decision="allow",
        tokens=answer,
        token_ids=[rng.randrange(50_000) for _ in answer],
        token_logprobs=logprobs,
        top_tokens=[[tok] + [f"alt{j}" for j in range(1, top_k)] for tok in answer],
        top_ids=[[rng.randrange(50_000) for _ in range(top_k)] for _ in answer],
        top_logprobs=[[lp] + [lp - j for j in range(1, top_k)] for lp in logprobs],
    )


def make_run(run_dir: Path, count: int, tokens: int, top_k: int) -> float:
    """A run folder with `count` answered records, 10 % of them dropped; returns the seconds it took."""
    started = time.perf_counter()
    layout = RunLayout(run_dir)
    layout.harvest_dir.mkdir(parents=True)
    layout.filtered_dir.mkdir(parents=True)
    rng = random.Random(0)
    kept, dropped = [], []
    with HarvestStore(layout.ledger) as store:
        for i in range(count):
            record = make_record(i, tokens, top_k, rng)
            store.put_done(record)
            if i % 10 == 9:
                dropped.append(DroppedRecord(filter="finished", reason="truncated", record=record))
            else:
                kept.append(record)
    for path, items, is_dropped in ((layout.kept, kept, False), (layout.dropped, dropped, True)):
        with RecordsWriter(path, dropped=is_dropped, inside=run_dir) as writer:
            for start in range(0, len(items), 1000):
                writer.write(items[start : start + 1000])
    report = {"input": count, "kept": len(kept), "dropped": len(dropped), "steps": []}
    report["drop_reasons"] = {"finished:truncated": len(dropped)}
    write_text(layout.filter_report, json.dumps(report), inside=run_dir)
    return time.perf_counter() - started


def load_seconds(page: Path) -> float:
    """Seconds from navigation until the page's script marked it ready, in headless Chromium (best of 3)."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        for _ in range(3):
            tab = browser.new_page()
            started = time.perf_counter()
            tab.goto(page.resolve().as_uri(), wait_until="load", timeout=120_000)
            tab.wait_for_selector("body[data-view-ready=yes]", timeout=120_000)
            times.append(time.perf_counter() - started)
            tab.close()
        browser.close()
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--tokens", type=int, default=48, help="answer tokens per record")
    parser.add_argument("--top-k", type=int, default=5, help="logprobs per token")
    parser.add_argument("--page", type=Path, action="append", default=[], help="also time loading this page")
    parser.add_argument("--no-write", action="store_true", help="print the results only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "bench-run"
        made = make_run(run_dir, args.records, args.tokens, args.top_k)
        disk = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
        started, cpu = time.perf_counter(), time.process_time()
        page = view.run(run_dir)
        render, render_cpu = time.perf_counter() - started, time.process_time() - cpu
        size = page.stat().st_size
        load = load_seconds(page)
    pages = [(path, path.stat().st_size, load_seconds(path)) for path in args.page]

    lines = [
        f"# view benchmark, {dt.date.today().isoformat()}",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f} at the end (the CPU is shared with other jobs; times are upper bounds).",
        f"- Run folder: {args.records:,} records ({args.tokens} answer tokens, top-{args.top_k} logprobs each; "
        f"10 % dropped), {disk / 1e9:.2f} GB on disk, made in {made:.0f} s.",
        f"- `view.run`: **{render:.1f} s** wall, {render_cpu:.1f} s of CPU, page **{size / 1e6:.2f} MB** "
        f"(records browser: a seeded sample of {view.MAX_RECORDS:,}; target under ~20 MB).",
        f"- Loaded in headless Chromium until the page's script ran: **{load:.2f} s** (best of 3).",
    ]
    for path, page_size, seconds in pages:
        lines.append(
            f"- `{path}`: {page_size / 1e6:.2f} MB, loaded in **{seconds:.2f} s** (best of 3; target under 2 s)."
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        out = ROOT / "benchmarks" / "results" / f"view_size-{dt.date.today().isoformat()}.md"
        out.write_text(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
