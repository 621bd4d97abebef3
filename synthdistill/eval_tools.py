"""Eval of tool and structured packs: does the student call what the teacher called, is its JSON valid?

    tool_call_match   per tool pack, over held-out prompts the teacher answered with calls: the share
                      where the student's own greedy answer calls the same functions (in order)
                      (`same_function`), with arguments written exactly as the teacher's
                      (`arguments_exact`) and with arguments that parse to equal JSON
                      (`arguments_json_equal`); `prompts` is how many were asked
    schema_valid_rate per pack with a response_format: the share of the student's greedy answers
                      to held-out prompts that are JSON valid against the schema

The student's calls are read from its decoded output however its template writes them:
every JSON object in it with a "name" and "arguments" (or "parameters"), as Hermes/Qwen
`<tool_call>{…}</tool_call>` and Llama 3.1's bare JSON both are. Kept small: at most
`MAX_PROMPTS` held-out prompts per pack.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from synthdistill.packs.verifiers import parse_calls
from synthdistill.teachers.answer_formats import structured_problem

MAX_PROMPTS = 32


def _same_json(a: str, b: str) -> bool:
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


MATCH_NAMES = ("same_function", "arguments_exact", "arguments_json_equal")


def call_match(got: list[tuple[str, str]], want: list[tuple[str, str]]) -> tuple[bool, bool, bool]:
    """(same functions in order, arguments written the same, arguments equal as JSON) of the student's calls."""
    same = [g[0] for g in got] == [w[0] for w in want]
    exact = same and all(g[1].strip() == w[1].strip() for g, w in zip(got, want))
    equal = same and all(_same_json(g[1], w[1]) for g, w in zip(got, want))
    return same, exact, equal


def teacher_calls(sft_rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """prompt_id → the teacher's calls (name, arguments) on the final turn of its held-out SFT row."""
    calls = {}
    for row in sft_rows:
        final = row["messages"][-1].get("tool_calls") or []
        if final:
            calls[row["prompt_id"]] = [(c["function"]["name"], c["function"]["arguments"]) for c in final]
    return calls


def _answer(answers, prompt, limit: int) -> str:
    """The model's greedy answer to a pack prompt (shared with the verifiers: generated once)."""
    tools = prompt.answer_format.tools if prompt.answer_format is not None else None
    return answers.answer(prompt.prompt_id, [m.model_dump() for m in prompt.messages], limit, tools)


def answer_format_shares(
    packs: list, answers, held_out: set[str], sft_rows: list[dict[str, Any]], limit_of: Callable[[Any], int]
) -> dict[str, Any]:
    """{"tool_call_match": {pack: {...}}, "schema_valid_rate": {pack: share}} (keys only for such packs).

    `answers` is evaluate.GreedyAnswers (one model's greedy answers by prompt id); `limit_of(pack)` the new
    tokens a pack's answer may take.
    """
    expected = teacher_calls(sft_rows)
    matches: dict[str, dict[str, Any]] = {}
    valid: dict[str, float] = {}
    for pack in packs:
        answer_format = pack.answer_format
        if answer_format is None:
            continue
        limit = limit_of(pack)
        prompts = [p for p in pack.prompts if p.prompt_id in held_out]
        if answer_format.tools:
            asked = [p for p in prompts if p.prompt_id in expected][:MAX_PROMPTS]
            if asked:
                counts = [0, 0, 0]
                for prompt in asked:
                    got = parse_calls(_answer(answers, prompt, limit))
                    counts = [a + b for a, b in zip(counts, call_match(got, expected[prompt.prompt_id]))]
                matches[pack.name] = {"prompts": len(asked)} | {
                    name: round(n / len(asked), 6) for name, n in zip(MATCH_NAMES, counts)
                }
        if answer_format.schema is not None and prompts:
            asked = prompts[:MAX_PROMPTS]
            ok = sum(structured_problem(answer_format, _answer(answers, p, limit).strip()) is None for p in asked)
            valid[pack.name] = round(ok / len(asked), 6)
    result: dict[str, Any] = {}
    if matches:
        result["tool_call_match"] = matches
    if valid:
        result["schema_valid_rate"] = valid
    return result
