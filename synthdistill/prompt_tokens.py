"""Prompt tokens of a request as the teacher counts them: with its tokenizer where one is at hand, else estimated.

The tokenizer at hand, in order: `teacher.tokenizer` (a folder or an embedded model id); the
in-process teacher's own model; `teacher.model` when it names a local folder or an embedded
model (e.g. a vLLM server serving SmolLM2 under its hub id). Counted as the teacher counts:
the chat template with the generation prompt (`chat_tokens.prompt_token_ids`, what the
in-process teacher and vLLM report as `prompt_tokens`), or the plain-text prompt for
`teacher.endpoint: completions`.

Without one, the estimate is ESTIMATE_RULE within ESTIMATE_MARGIN. Measured on the 513 prompts of
the four shipped packs against SmolLM2-135M-Instruct's tokenizer and chat template
(2026-12-01): a pack's total is 0.82 (general-chat) to 1.13 (json-extraction) times the
estimate; one prompt 0.73 to 1.91 times (p5 0.77, p95 1.15; the high ones are short turns of
multi-turn, where the template's per-message tokens dominate). The margin (0.7–1.3) covers a
pack's total with room for other tokenizers (Gemma 3's counts the packs' text 1.4 % below SmolLM2's on average).
"""

from __future__ import annotations

import math
from typing import Any

from synthdistill.chat_tokens import prompt_token_ids
from synthdistill.config import DistillConfig
from synthdistill.errors import ConfigError, InputError, StageError
from synthdistill.model_store import TOKENIZER_FILES, embedded_model, resolve_tokenizer
from synthdistill.pricing import TEMPLATE_TOKENS_PER_MESSAGE
from synthdistill.records import Message, Prompt

BYTES_PER_TOKEN = 4
ESTIMATE_MARGIN = (0.7, 1.3)
ESTIMATE_RULE = (
    f"estimated: UTF-8 bytes / {BYTES_PER_TOKEN} + {TEMPLATE_TOKENS_PER_MESSAGE} per message, "
    f"range ×{ESTIMATE_MARGIN[0]}–×{ESTIMATE_MARGIN[1]} (measured on the shipped packs against SmolLM2's "
    "tokenizer: a pack's total within ×0.82–×1.13)"
)


def estimate(messages: list[Message]) -> tuple[int, int, int]:
    """(low, estimate, high) prompt tokens of messages without a tokenizer."""
    value = round(
        sum(len(m.content.encode("utf-8")) for m in messages) / BYTES_PER_TOKEN
        + TEMPLATE_TOKENS_PER_MESSAGE * len(messages)
    )
    return math.floor(value * ESTIMATE_MARGIN[0]), value, math.ceil(value * ESTIMATE_MARGIN[1])


def tokenizer_reference(config: DistillConfig) -> str | None:
    """The tokenizer at hand for the configured teacher (see the module docstring); None: estimate."""
    teacher = config.teacher
    if teacher.tokenizer:
        return teacher.tokenizer
    if teacher.backend == "transformers" or embedded_model(teacher.model) is not None:
        return teacher.model
    folder = config.resolve(teacher.model)
    if folder.is_dir() and any((folder / name).exists() for name in TOKENIZER_FILES):
        return str(folder)
    return None


class PromptCounter:
    """Counts each prompt once (samples share it): `count(prompt)` → (low, value, high)."""

    def __init__(self, tokenizer: Any = None, name: str | None = None, endpoint: str = "chat"):
        self.tokenizer, self.endpoint = tokenizer, endpoint
        self.method = "tokenizer" if tokenizer is not None else "estimate"
        self.rule = ESTIMATE_RULE
        if tokenizer is not None:
            how = "the plain-text /completions prompt" if endpoint == "completions" else "its chat template"
            if endpoint == "chat" and not getattr(tokenizer, "chat_template", None):
                how = f"no chat template: content tokens + {TEMPLATE_TOKENS_PER_MESSAGE} per message"
            self.rule = f"counted with the tokenizer of {name} ({how})"
        self._seen: dict[str, tuple[int, int, int]] = {}

    def count(self, prompt: Prompt) -> tuple[int, int, int]:
        if prompt.prompt_id not in self._seen:
            self._seen[prompt.prompt_id] = self._count(prompt.messages)
        return self._seen[prompt.prompt_id]

    def _count(self, messages: list[Message]) -> tuple[int, int, int]:
        if self.tokenizer is None:
            return estimate(messages)
        if self.endpoint == "completions":
            from synthdistill.teachers.openai_dialects import render_prompt  # pulls httpx

            n = len(self.tokenizer(render_prompt(messages))["input_ids"])
        elif getattr(self.tokenizer, "chat_template", None):
            n = len(prompt_token_ids(self.tokenizer, [m.model_dump() for m in messages]))
        else:
            n = sum(
                len(self.tokenizer(m.content, add_special_tokens=False)["input_ids"]) + TEMPLATE_TOKENS_PER_MESSAGE
                for m in messages
            )
        return n, n, n


def prompt_counter(config: DistillConfig) -> tuple[PromptCounter, list[str]]:
    """The counter for the configured teacher, and warnings (a teacher's tokenizer that could not be had)."""
    reference = tokenizer_reference(config)
    if reference is None:
        return PromptCounter(), []
    try:
        folder = resolve_tokenizer(reference, config.project_dir)
    except (InputError, StageError) as exc:
        if config.teacher.tokenizer:  # asked for by name: a mistake to fix, not a fallback
            raise ConfigError(f"teacher.tokenizer '{reference}': {exc}", file=config.path) from None
        return PromptCounter(), [f"no tokenizer for '{reference}' ({exc}); prompt tokens are estimated"]
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the tokenizer in {folder}: {exc}", file=config.path) from None
    return PromptCounter(tokenizer, reference, config.teacher.endpoint), []
