"""Eval of a student trained on a thinking teacher's traces: verifier pass rate with and without thinking.

    thinking       the student's greedy output after its generation prompt (`enable_thinking=True`
                   where the template takes it); the answer is what follows `</think>`
    non_thinking   thinking switched off: `enable_thinking=False` where the template takes it,
                   else an empty `<think>\\n\\n</think>\\n\\n` block placed after the generation prompt

Kept small: at most `MAX_PROMPTS` held-out prompts per pack and mode.
"""

from __future__ import annotations

from typing import Any

from synthdistill.chat_tokens import REASONING_KEY, prompt_token_ids
from synthdistill.packs.verifiers import verify_answer
from synthdistill.thinking import THINK_CLOSE, THINK_OPEN, split_inline

MAX_PROMPTS = 16
EMPTY_THOUGHT = f"{THINK_OPEN}\n\n{THINK_CLOSE}\n\n"


def has_traces(sft_rows: list[dict[str, Any]]) -> bool:
    """Whether the SFT rows teach a trace (a reasoning_content key or an inline <think> block)."""
    for row in sft_rows:
        last = row["messages"][-1]
        if last.get(REASONING_KEY) or split_inline(last.get("content") or "")[0] is not None:
            return True
    return False


def _takes_enable_thinking(tokenizer, messages: list[dict]) -> bool:
    try:
        on = prompt_token_ids(tokenizer, messages, enable_thinking=True)
        off = prompt_token_ids(tokenizer, messages, enable_thinking=False)
    except Exception:  # noqa: BLE001 - a template that rejects the argument does not take it
        return False
    return on != off


def _prompt(tokenizer, messages: list[dict], thinking: bool) -> list[int]:
    if _takes_enable_thinking(tokenizer, messages):
        return prompt_token_ids(tokenizer, messages, enable_thinking=thinking)
    ids = prompt_token_ids(tokenizer, messages)
    return ids if thinking else ids + tokenizer(EMPTY_THOUGHT, add_special_tokens=False)["input_ids"]


def pass_rates_by_mode(packs: list, model, tokenizer, held_out: set[str], max_new_tokens: int) -> dict[str, Any]:
    """{"thinking": {pack: rate}, "non_thinking": {pack: rate}} over held-out prompts of packs with a verifier."""
    import torch

    result: dict[str, dict[str, float]] = {"thinking": {}, "non_thinking": {}}
    for pack in packs:
        prompts = [p for p in pack.prompts if p.prompt_id in held_out][:MAX_PROMPTS]
        if not prompts:
            continue
        budget = pack.spec.sampling.max_tokens if pack.spec.sampling and pack.spec.sampling.max_tokens else None
        for mode in result:
            passed = 0
            for prompt in prompts:
                ids = _prompt(tokenizer, [m.model_dump() for m in prompt.messages], mode == "thinking")
                with torch.no_grad():
                    output = model.generate(
                        torch.tensor([ids]),
                        max_new_tokens=budget or max_new_tokens,
                        do_sample=False,
                        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                    )
                text = tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)
                answer = split_inline(text, "length")[1]  # after </think>; nothing when the trace never closed
                passed += verify_answer(pack.verify, prompt.variables or {}, answer)[0]
            result[mode][pack.name] = round(passed / len(prompts), 6)
    return result
