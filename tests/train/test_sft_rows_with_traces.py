"""SFT training rows learn a thinking teacher's trace the way the student's template renders it."""

from __future__ import annotations

import copy

from synthdistill.chat_tokens import IGNORE_INDEX
from synthdistill.train.data import sft_token_rows
from tests.test_build_thinking import TEMPLATE_WITH_TRACE

PROMPT = {"role": "user", "content": "2+2?", "reasoning_content": None}  # as Parquet gives it back
LEARNED = "<think>\nhmm, two and two\n</think>\n\nIt is 4.<|im_end|>"


def _learned(tokenizer, assistant) -> str:
    (row,) = sft_token_rows([{"messages": [PROMPT, assistant]}], tokenizer, 256)
    return tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != IGNORE_INDEX])


def test_a_reasoning_content_key_an_inline_block_and_a_template_without_the_key_learn_the_same_turn(tokenizer):
    with_trace = copy.deepcopy(tokenizer)
    with_trace.chat_template = TEMPLATE_WITH_TRACE
    key = {"role": "assistant", "content": "It is 4.", "reasoning_content": "hmm, two and two"}
    inline = {
        "role": "assistant",
        "content": "<think>\nhmm, two and two\n</think>\n\nIt is 4.",
        "reasoning_content": None,
    }
    assert _learned(with_trace, key) == LEARNED  # rendered by the template
    assert _learned(tokenizer, key) == LEARNED  # SmolLM2's template drops the key: the trace goes inline
    assert _learned(tokenizer, inline) == LEARNED
    plain = {"role": "assistant", "content": "It is 4.", "reasoning_content": None}
    assert _learned(tokenizer, plain) == "It is 4.<|im_end|>"
