"""The report's "Plan and spend" section: what the last harvest planned before its first request, beside what it spent.

An unknown price reads "unknown" on both sides, never $0; a self-hosted teacher's $0 says so.
"""

from __future__ import annotations

from typing import Any

from synthdistill.pricing import SELF_HOSTED, describe_cost, usd

NO_PLAN = "No plan was recorded (`synthdistill harvest` writes harvest/plan.json before its first request)."


def _number(value: Any) -> str:
    return "not recorded" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _tokens(planned: dict | None, method: str | None) -> str:
    if not planned:
        return "not recorded"
    if planned["low"] == planned["high"]:
        return f"{planned['value']:,} (counted with the teacher's tokenizer)"
    return f"~{planned['value']:,} ({planned['low']:,}–{planned['high']:,}, {method or 'estimated'})"


def _cost_range(planned: dict | None, source: str | None) -> str:
    if planned is None:
        return describe_cost(None, source or "unknown")
    if source == SELF_HOSTED:
        return "$0 (self-hosted)"
    return f"{usd(planned['low'])}–{usd(planned['high'])} ({source})"


def plan_rows(manifest: dict[str, Any]) -> tuple[str, list[list[str]]]:
    """The section's lead sentence and its rows (what, planned, spent); no rows without a recorded plan."""
    harvest = ((manifest.get("stages") or {}).get("harvest")) or {}
    plan = harvest.get("plan")
    if not plan:
        return NO_PLAN, []
    source = plan.get("price_source")
    answers = plan["answer_tokens"]["planned"]
    expected = "?" if answers.get("expected") is None else f"~{answers['expected']:,}"
    time = plan["seconds"]["planned"]
    planned_time = "unknown" if time.get("seconds") is None else f"{time.get('bound')} {time['seconds']} s"
    spent_cost = plan["cost_usd"]["spent"]
    rows = [
        ["requests", _number(plan["requests"]["planned"]), _number(plan["requests"]["spent"])],
        [
            "prompt tokens",
            _tokens(plan["prompt_tokens"]["planned"], plan.get("prompt_tokens_method")),
            _number(plan["prompt_tokens"]["spent"]),
        ],
        [
            "answer tokens",
            f"{expected} expected, at most {_number(answers.get('max'))}",
            _number(plan["answer_tokens"]["spent"]),
        ],
        [
            "cost",
            _cost_range(plan["cost_usd"]["planned"], source),
            describe_cost(spent_cost, source or "unknown") if plan["run_finished"] else "not recorded",
        ],
        ["time", planned_time, "not recorded" if plan["seconds"]["spent"] is None else f"{plan['seconds']['spent']} s"],
    ]
    lead = "What the last harvest planned before its first request, beside what that harvest spent"
    if not plan["run_finished"]:
        lead += " (it did not finish: nothing spent was recorded)"
    return lead + ".", rows


def shard_blocks(manifest: dict[str, Any]) -> tuple[str | None, list[list[str]]]:
    """Several machines: the shard this ledger harvested, and every merge of shard ledgers into it (its inputs)."""
    harvest = ((manifest.get("stages") or {}).get("harvest")) or {}
    merges = harvest.get("merges") or []
    rows = [
        [
            merge.get("merged_at") or "",
            item.get("run_dir") or "",
            item.get("shard") or "not sharded",
            _number(item.get("answered")),
            _number(item.get("added")),
            _number(item.get("conflicts")),
        ]
        for merge in merges
        for item in merge.get("inputs") or []
    ]
    if not merges:
        shard = harvest.get("shard")
        return (f"This ledger holds shard {shard} of the requests (`harvest --shard`)." if shard else None), []
    shards = sorted({s for merge in merges for s in merge.get("shards") or []})
    missing = merges[-1].get("missing_shards") or []
    lead = f"Merged from the ledgers of shards {', '.join(shards) or 'none recorded'} (`synthdistill merge`, "
    lead += f"{len(merges)} merge{'s' if len(merges) > 1 else ''}; inputs below)"
    lead += f"; no input held shard {', '.join(missing)}." if missing else "."
    return lead, rows
