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
from typing import Any

from synthdistill.chat_tokens import prompt_token_ids
from synthdistill.packs.verifiers import parse_calls
from synthdistill.teachers.answer_formats import structured_problem
from synthdistill.tool_turns import template_messages

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


def prompt_ids_of(tokenizer, prompt) -> list[int]:
    """A pack prompt's token ids for the student: its messages (tool turns included) and the pack's tools."""
    tools = prompt.answer_format.tools if prompt.answer_format is not None else None
    messages = template_messages([m.model_dump() for m in prompt.messages])
    return prompt_token_ids(tokenizer, messages, **({"tools": tools} if tools else {}))


def _greedy(model, tokenizer, prompt, max_new_tokens: int) -> str:
    import torch

    ids = prompt_ids_of(tokenizer, prompt)
    with torch.no_grad():
        output = model.generate(
            torch.tensor([ids]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    return tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)


def answer_format_shares(
    packs: list, model, tokenizer, held_out: set[str], sft_rows: list[dict[str, Any]], max_new_tokens: int
) -> dict[str, Any]:
    """{"tool_call_match": {pack: {...}}, "schema_valid_rate": {pack: share}} (keys only for such packs)."""
    expected = teacher_calls(sft_rows)
    matches: dict[str, dict[str, Any]] = {}
    valid: dict[str, float] = {}
    for pack in packs:
        answer_format = pack.answer_format
        if answer_format is None:
            continue
        budget = pack.spec.sampling.max_tokens if pack.spec.sampling and pack.spec.sampling.max_tokens else None
        prompts = [p for p in pack.prompts if p.prompt_id in held_out]
        if answer_format.tools:
            asked = [p for p in prompts if p.prompt_id in expected][:MAX_PROMPTS]
            if asked:
                counts = [0, 0, 0]
                for prompt in asked:
                    got = parse_calls(_greedy(model, tokenizer, prompt, budget or max_new_tokens))
                    counts = [a + b for a, b in zip(counts, call_match(got, expected[prompt.prompt_id]))]
                matches[pack.name] = {"prompts": len(asked)} | {
                    name: round(n / len(asked), 6) for name, n in zip(MATCH_NAMES, counts)
                }
        if answer_format.schema is not None and prompts:
            asked = prompts[:MAX_PROMPTS]
            ok = sum(
                structured_problem(answer_format, _greedy(model, tokenizer, p, budget or max_new_tokens).strip())
                is None
                for p in asked
            )
            valid[pack.name] = round(ok / len(asked), 6)
    result: dict[str, Any] = {}
    if matches:
        result["tool_call_match"] = matches
    if valid:
        result["schema_valid_rate"] = valid
    return result
