"""Benchmark: filter and build at scale (10k, 100k, … records), and a harvest against the loopback teacher.

    .venv/bin/python benchmarks/scale.py --records 10000            # appends to benchmarks/results/scale-<date>.{md,json}
    .venv/bin/python benchmarks/scale.py --records 100000 --workers 1,2   # the same ledger, filtered and built by each
    .venv/bin/python benchmarks/scale.py --harvest 20000           # harvest N requests from tests/openai_server.py

Records (benchmarks/scale_records.py): 128 answer tokens, top-20 logprobs, SmolLM2's own tokens (the
quickstart's student, so the build needs no cross-tokenizer alignment), ~2 % near-duplicates, written
straight into a ledger through `HarvestStore`. Filter (`finished`, `dedup` with near-duplicates) and
build (SFT + KD) run as the CLI, in a child process each; the table gives wall time, the peak RSS of
the child's whole process tree (sampled every 0.1 s), and the bytes on disk of each stage's output,
also per answer token. On a shared machine the seconds are noisy: read the RSS and the bytes.
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import yaml  # noqa: E402

from synthdistill.config import load_config  # noqa: E402
from synthdistill.filter_stage import BATCH  # noqa: E402
from synthdistill.packs import configured_prompts  # noqa: E402
from synthdistill.policy import gate, write_decision  # noqa: E402
from synthdistill.store import HarvestStore  # noqa: E402

TOKENS, TOP_K = 128, 20
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
RESULTS = ROOT / "benchmarks" / "results"


def write_project(root: Path, records: int, teacher: dict | None = None) -> Path:
    """A project with a pack of `records` prompts (the quickstart's teacher and student, filters on)."""
    from scale_records import WORDS

    pack = root / "prompts" / "bench"
    pack.mkdir(parents=True)
    spec = {"name": "bench", "version": "1.0.0", "licence": "CC0-1.0", "template": "{{ q }}", "rows": "rows.jsonl"}
    (pack / "pack.yaml").write_text(yaml.safe_dump(spec))
    with (pack / "rows.jsonl").open("w") as rows:
        for i in range(records):
            rows.write(
                json.dumps({"q": f"Explain {WORDS[i % len(WORDS)]} and {WORDS[i * 7 % len(WORDS)]} (case {i})."}) + "\n"
            )
    shutil.copytree(ROOT / "examples" / "quickstart" / "policies", root / "policies")
    config = {
        "name": "bench",
        "teacher": teacher or {"backend": "transformers", "model": MODEL, "policy": "auto"},
        "use": {"commercial": True, "distribute_student": True, "competes_with_teacher_provider": False},
        "harvest": {"packs": ["prompts/bench"], "max_tokens": TOKENS + 16, "top_logprobs": TOP_K, "seed": 0},
        "filters": ["finished", {"dedup": {"exact": True, "near_threshold": 0.8}}],
        "student": {"model": MODEL, "name": "bench-student", "method": "kd", "max_length": 256},
    }
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


_MAKING: dict = {}  # what fill_ledger's forked workers read: the record maker and the prompts


def _encoded(start: int) -> list[tuple]:
    from synthdistill.store import encoded_answer

    maker, prompts = _MAKING["maker"], _MAKING["prompts"]
    return [encoded_answer(maker.make(i, prompts[i])) for i in range(start, min(start + 1000, len(prompts)))]


def fill_ledger(path: Path, records: int, processes: int = 1) -> float:
    """`records` answers, one per prompt, made in `processes` and stored through HarvestStore; returns the seconds."""
    import multiprocessing

    from scale_records import RecordMaker
    from transformers import AutoTokenizer

    from synthdistill.model_store import resolve_tokenizer

    started = time.perf_counter()
    config = load_config(path)
    _MAKING["maker"] = RecordMaker(AutoTokenizer.from_pretrained(resolve_tokenizer(MODEL)), TOKENS, TOP_K)
    _MAKING["prompts"] = configured_prompts(config)
    starts = range(0, len(_MAKING["prompts"]), 1000)
    with (
        HarvestStore(config.layout.ledger) as store,
        multiprocessing.get_context("fork").Pool(processes) as pool,
    ):
        for chunk, rows in enumerate(pool.imap(_encoded, starts)):
            with store.transaction():
                store.put_done_encoded(rows)
            if chunk % 10 == 9:
                print(
                    f"  {(chunk + 1) * 1000:,} records in the ledger ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
    _MAKING.clear()
    write_decision(config.layout, gate(config))
    return time.perf_counter() - started


def run_measured(args: list[str], cwd: Path, code: Path | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS of the process tree in bytes) of a CLI command; exits on failure.

    `code`: run the synthdistill package of that source tree instead of this one (a baseline).
    """
    import psutil

    env = {**os.environ, "PYTHONPATH": str(code)} if code is not None else None
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "synthdistill", *args], cwd=cwd, stdout=subprocess.DEVNULL, env=env)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(child.pid)
        while not done.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    done.set()
    sampler.join()
    if code != 0:
        sys.exit(f"synthdistill {' '.join(args)} exited {code}")
    return time.perf_counter() - started, peak


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def row(stage: str, n: int, wall: float, rss: int | None, disk: int | None, tokens: int, workers: int = 1) -> dict:
    return {
        "stage": stage,
        "records": n,
        "workers": workers,
        "batch": BATCH,  # records per batch of filter (and row group of filtered/)
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(rss / 2**20) if rss else None,
        "bytes": disk,
        "bytes_per_answer_token": round(disk / tokens, 1) if disk and tokens else None,
    }


def scale_run(
    records: int,
    workers: list[int],
    keep: Path | None,
    write: bool = True,
    processes: int = 1,
    project: Path | None = None,
    stages: tuple[str, ...] = ("filter", "build"),
) -> list[dict]:
    """Generate `records` into a ledger, then filter and build it with each number of `workers` in turn.

    With `project` (a folder an earlier `--keep` run left), a ledger already generated there is reused.
    """
    work = project or Path(tempfile.mkdtemp(prefix="scale-", dir=keep))
    try:
        config_path = work / "distill.yaml"
        rows = []
        tokens = records * TOKENS
        if not (work / "distill.yaml").exists():
            config_path = write_project(work, records)
            layout = load_config(config_path).layout
            print(f"{records:,} records into {layout.ledger}", flush=True)
            made = fill_ledger(config_path, records, processes)
            rows.append(row("ledger (generate)", records, made, None, size(layout.ledger), tokens, processes))
            save(rows[-1:], write)  # each row as soon as it is measured: a long run that is stopped keeps them
        layout = load_config(config_path).layout
        for n in workers:
            for stage, out in (("filter", layout.filtered_dir), ("build", layout.datasets_dir)):
                if stage not in stages:
                    continue
                wall, rss = run_measured([stage, "-c", str(config_path), "--workers", str(n)], work)
                rows.append(row(stage, records, wall, rss, size(out), tokens, n))
                save(rows[-1:], write)
        kd = layout.dataset_dir("kd")
        if workers:
            rows.append(row("  of which datasets/kd", records, 0, None, size(kd) if kd.exists() else 0, tokens))
            save(rows[-1:], write)
        return rows
    finally:
        if keep is None and project is None:
            shutil.rmtree(work, ignore_errors=True)


def harvest_run(requests: int) -> list[dict]:
    from tests.openai_server import FakeOpenAIServer

    work = Path(tempfile.mkdtemp(prefix="scale-harvest-"))
    try:
        with FakeOpenAIServer(model="HuggingFaceTB/SmolLM2-135M-Instruct") as server:
            teacher = {"backend": "openai", "model": MODEL, "base_url": server.base_url, "policy": "auto"}
            teacher["max_concurrency"] = 32
            config_path = write_project(work, requests, teacher)
            layout = load_config(config_path).layout
            wall, rss = run_measured(["harvest", "-c", str(config_path)], work)
            with HarvestStore(layout.ledger) as store:
                tokens = sum(r.usage.completion_tokens for r in store.records())
            first = row("harvest", requests, wall, rss, size(layout.ledger), tokens)
            wall, rss = run_measured(["harvest", "-c", str(config_path)], work)
            again = row("harvest again (nothing left)", requests, wall, rss, None, tokens)
        return [first, again]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def save(rows: list[dict], write: bool = True) -> None:
    """Append to today's results and rewrite its table (with `write` False: print the rows)."""
    if not write:
        print(json.dumps(rows), flush=True)
        return
    day = dt.date.today().isoformat()
    path = RESULTS / f"scale-{day}.json"
    data = json.loads(path.read_text()) if path.exists() else {"rows": []}
    data["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    data["date"] = day
    data["rows"] += [{**r, "load_average": round(os.getloadavg()[0], 1)} for r in rows]
    path.write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        f"# scale benchmark, {day}",
        "",
        f"Machine: {data['machine']}. Records: {TOKENS} answer tokens, top-{TOP_K} logprobs, SmolLM2's tokens, "
        "~2 % near-duplicates (benchmarks/scale.py). Peak RSS: the child's whole process tree. "
        "Each row's 1-minute load average is in the JSON (above the core count: the machine was shared).",
        "",
        "| stage | records | workers | batch | wall s | peak RSS MiB | bytes on disk | B / answer token |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        cells = [
            r["stage"],
            f"{r['records']:,}",
            str(r["workers"]),
            str(r.get("batch", "-")),
            f"{r['wall_s']:,}" if r["wall_s"] is not None else "-",
            f"{r['peak_rss_mib']:,}" if r["peak_rss_mib"] else "-",
            f"{r['bytes']:,}" if r["bytes"] else "-",
            f"{r['bytes_per_answer_token']}" if r["bytes_per_answer_token"] else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    (RESULTS / f"scale-{day}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=0, help="generate this many records, then time filter and build")
    parser.add_argument("--workers", default="1", help="filter and build with each of these (e.g. 1,2; 0: none)")
    parser.add_argument("--harvest", type=int, default=0, help="harvest this many requests from the loopback teacher")
    parser.add_argument("--keep", type=Path, default=None, help="make the run folder under this folder, and keep it")
    parser.add_argument("--processes", type=int, default=1, help="make the ledger's records in this many processes")
    parser.add_argument("--project", type=Path, default=None, help="a folder `--keep` left: reuse its ledger")
    parser.add_argument("--no-write", action="store_true", help="print the results only")
    parser.add_argument("--stages", default="filter,build", help="which to time (build alone: on a filtered --project)")
    args = parser.parse_args()
    if args.records:
        workers = [int(n) for n in args.workers.split(",") if int(n)]
        stages = tuple(args.stages.split(","))
        scale_run(args.records, workers, args.keep, not args.no_write, args.processes, args.project, stages)
    if args.harvest:
        save(harvest_run(args.harvest), not args.no_write)


if __name__ == "__main__":
    main()
