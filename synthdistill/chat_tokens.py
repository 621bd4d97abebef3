"""Tokenize a conversation for training: prompt tokens masked, answer tokens learned.

SmolLM2's chat template has no `{% generation %}` markers, so TRL's
`assistant_only_loss` cannot build the mask; we render the prompt with the
generation prompt and append the answer ourselves.
"""

from __future__ import annotations

from typing import Any

from synthdistill.thinking import THINK_CLOSE, THINK_OPEN, split_inline

IGNORE_INDEX = -100  # the label of a position with no loss (torch's cross_entropy default); used everywhere


def prompt_token_ids(tokenizer: Any, messages: list[dict[str, str]], **template_kwargs: Any) -> list[int]:
    """Token ids of the prompt messages followed by the assistant generation prompt.

    `template_kwargs` reach the chat template (`enable_thinking=False` for a hybrid thinking model).
    """
    messages = [{k: v for k, v in m.items() if v is not None} for m in messages]  # Parquet fills absent keys
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **template_kwargs)
    if hasattr(encoded, "keys"):  # transformers 5 returns a BatchEncoding
        encoded = encoded["input_ids"]
    return list(encoded)


def answer_token_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of an answer text followed by the end-of-turn token."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return list(ids) + [tokenizer.eos_token_id]


def training_example(prompt_ids: list[int], answer_ids: list[int], max_length: int) -> dict[str, list[int]] | None:
    """input_ids and labels (-100 on the prompt), truncated from the answer's end; None if no answer fits."""
    input_ids = (prompt_ids + answer_ids)[:max_length]
    if len(prompt_ids) >= len(input_ids):
        return None
    labels = [IGNORE_INDEX] * len(prompt_ids) + input_ids[len(prompt_ids) :]
    return {"input_ids": input_ids, "labels": labels}


# -- a thinking teacher's trace in the student's assistant turn ---------------------------

REASONING_KEY = "reasoning_content"  # the assistant-message key chat templates (Qwen3, DeepSeek) render
_MARKER = "synthdistill-trace-marker-7f3a"


def inline_turn(reasoning: str, answer: str) -> str:
    """A trace written inline before the answer, as R1-style models generate it."""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{answer}"


def renders_reasoning_content(tokenizer: Any) -> bool:
    """Whether the student's chat template renders an assistant message's `reasoning_content` (tried, not guessed)."""
    turn = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", REASONING_KEY: _MARKER}]
    try:
        return _MARKER in tokenizer.apply_chat_template(turn, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render it does not render it
        return False


def assistant_message(answer: str, reasoning: str | None, how: str) -> dict[str, Any]:
    """The assistant message of an SFT row: `how` is key (a reasoning_content key), inline or drop."""
    if reasoning is None or how == "drop":
        return {"role": "assistant", "content": answer}
    if how == "key":
        return {"role": "assistant", "content": answer, REASONING_KEY: reasoning}
    return {"role": "assistant", "content": inline_turn(reasoning, answer)}


def _present(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if v is not None}  # Parquet structs fill absent keys with null


def turn_text(
    tokenizer: Any, prompt_messages: list[dict[str, Any]], message: dict[str, Any]
) -> tuple[str, tuple[int, int] | None, tuple[int, int]]:
    """The text the student learns for an assistant message, and the character ranges of trace and answer in it.

    A `reasoning_content` key is rendered by the student's own template (the turn's text after
    the generation prompt, up to the answer's end); a template that does not render it gets the
    trace inline. Inline `<think>…</think>` content is taken as it is.
    """
    message = _present(message)
    reasoning = message.get(REASONING_KEY)
    if reasoning is None:
        content = message["content"]
        trace, answer = split_inline(content)
        if trace is None:
            return content, None, (0, len(content))
        text = content
    else:
        answer, text = message["content"], _rendered_turn(tokenizer, prompt_messages, message)
        trace = reasoning
        if text is None or trace not in text or answer not in text[text.find(trace) + len(trace) :]:
            text = inline_turn(trace, answer)
    at = text.find(trace)
    answer_at = text.find(answer, at + len(trace))
    return text[: answer_at + len(answer)], (at, at + len(trace)), (answer_at, answer_at + len(answer))


def _rendered_turn(tokenizer: Any, prompt_messages: list[dict[str, Any]], message: dict[str, Any]) -> str | None:
    prompt = [_present(m) for m in prompt_messages]
    try:
        head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template([*prompt, message], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render the turn: the trace goes inline
        return None
    return full[len(head) :] if full.startswith(head) else None
