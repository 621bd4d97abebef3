"""A thinking teacher's knobs (`teacher.chat_template_kwargs`, `harvest.reasoning`) in each API style's form."""

from __future__ import annotations

import logging
from typing import Any

from synthdistill.records import Sampling

log = logging.getLogger(__name__)


# The thinking knobs each style's chat endpoint takes, and the body field it takes each as
# (`/completions` has no chat template and takes none): OpenAI, Together and Ollama take
# `reasoning_effort`; vLLM also `thinking_token_budget` and `chat_template_kwargs`; llama.cpp's
# server `thinking_budget_tokens` and `chat_template_kwargs`.
KNOB_FIELDS: dict[str, dict[str, str]] = {
    "openai": {"effort": "reasoning_effort"},
    "vllm": {
        "effort": "reasoning_effort",
        "budget_tokens": "thinking_token_budget",
        "chat_template_kwargs": "chat_template_kwargs",
    },
    "llamacpp": {"budget_tokens": "thinking_budget_tokens", "chat_template_kwargs": "chat_template_kwargs"},
    "together": {"effort": "reasoning_effort"},
    "ollama": {"effort": "reasoning_effort"},
}
KNOB_NAMES = {
    "effort": "harvest.reasoning.effort",
    "budget_tokens": "harvest.reasoning.budget_tokens",
    "chat_template_kwargs": "teacher.chat_template_kwargs",
}


def knob_values(sampling: Sampling) -> dict[str, Any]:
    """The thinking knobs a request carries: effort, budget_tokens, chat_template_kwargs (only those set)."""
    values: dict[str, Any] = {}
    if sampling.reasoning is not None:
        values.update(sampling.reasoning.model_dump(exclude_none=True))
    if sampling.chat_template_kwargs:
        values["chat_template_kwargs"] = dict(sampling.chat_template_kwargs)
    return values


def knob_fields(sampling: Sampling, style: str, endpoint: str = "chat") -> tuple[dict[str, Any], list[str]]:
    """(body fields, names of knobs this style has no field for) for a request's thinking knobs."""
    taken = KNOB_FIELDS.get(style, {}) if endpoint == "chat" else {}
    fields, ignored = {}, []
    for knob, value in knob_values(sampling).items():
        if knob in taken:
            fields[taken[knob]] = value
        else:
            ignored.append(knob)
    return fields, ignored


class KnobWarnings:
    """Thinking knobs a teacher could not pass on, each warned about once (the harvest summary lists them)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def ignored(self, knobs: list[str], where: str) -> None:
        for knob in knobs:
            message = f"{KNOB_NAMES[knob]} ignored: {where} has no such setting"
            if message not in self.messages:
                self.messages.append(message)
                log.warning(message)

    def note(self, sampling: Sampling, style: str, endpoint: str) -> None:
        """Warn (once) about the knobs of `sampling` that `style` on `endpoint` does not take."""
        _, ignored = knob_fields(sampling, style, endpoint)
        if ignored:
            where = f"the {style} API style" if endpoint == "chat" else "the /completions endpoint"
            self.ignored(ignored, where)
