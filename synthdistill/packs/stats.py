"""`packs stats`: prompt count, prompt length in tokens of a given tokenizer, near-duplicates."""

from __future__ import annotations

import math
import re
import statistics
from typing import TYPE_CHECKING, Any

from synthdistill.chat_tokens import prompt_token_ids
from synthdistill.model_store import resolve_model
from synthdistill.records import Prompt

if TYPE_CHECKING:
    from synthdistill.packs import Pack

DEFAULT_TOKENIZER = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the embedded model: no download


def load_tokenizer(reference: str | None = None):
    """A transformers tokenizer for `reference` (a folder or embedded model; default SmolLM2)."""
    from transformers import AutoTokenizer  # heavy: only `packs stats` needs it

    return AutoTokenizer.from_pretrained(str(resolve_model(reference or DEFAULT_TOKENIZER)))


def prompt_token_length(tokenizer: Any, prompt: Prompt) -> int:
    """Tokens of the prompt as the model sees it (chat template with generation prompt)."""
    messages = [m.model_dump() for m in prompt.messages]
    if getattr(tokenizer, "chat_template", None):
        return len(prompt_token_ids(tokenizer, messages))
    return sum(len(tokenizer(m["content"], add_special_tokens=False)["input_ids"]) for m in messages)


def duplicate_key(prompt: Prompt) -> str:
    """The prompt's text up to case, spacing and punctuation: such prompts differ in id only."""
    return re.sub(r"[\W_]+", " ", " ".join(m.content for m in prompt.messages)).casefold().strip()


def nearest_rank(sorted_values: list[int], fraction: float) -> int:
    """The nearest-rank percentile of an ascending, non-empty list."""
    return sorted_values[max(0, math.ceil(fraction * len(sorted_values)) - 1)]


def pack_stats(pack: Pack, tokenizer: Any) -> dict[str, Any]:
    """Prompt count, token length distribution and near-identical prompts of a loaded pack."""
    lengths = sorted(prompt_token_length(tokenizer, p) for p in pack.prompts)
    first_by_text: dict[str, str] = {}
    duplicates = []
    for prompt in pack.prompts:
        key = duplicate_key(prompt)
        if key in first_by_text:
            duplicates.append({"source": prompt.source, "same_as": first_by_text[key]})
        else:
            first_by_text[key] = prompt.source
    return {
        "pack": pack.name,
        "version": pack.version,
        "prompts": len(lengths),
        "turns": {"multi_turn": sum(1 for p in pack.prompts if sum(m.role == "user" for m in p.messages) > 1)},
        "tokens": {
            "min": lengths[0],
            "median": float(statistics.median(lengths)),
            "p90": nearest_rank(lengths, 0.9),
            "max": lengths[-1],
            "total": sum(lengths),
        },
        "duplicates": len(duplicates),
        "duplicate_sources": duplicates,
    }
