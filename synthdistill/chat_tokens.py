"""Tokenize a conversation for training: prompt tokens masked, answer tokens learned.

SmolLM2's chat template has no `{% generation %}` markers, so TRL's
`assistant_only_loss` cannot build the mask; we render the prompt with the
generation prompt and append the answer ourselves.
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100  # the label of a position with no loss (torch's cross_entropy default); used everywhere


def prompt_token_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the prompt messages followed by the assistant generation prompt."""
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
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
