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
