"""A thinking teacher's traces in the datasets (`datasets.reasoning: keep | drop | inline`).

    keep    a `reasoning_content` key on the assistant message where the student's chat template
            renders one (tried by rendering), else the trace inline; without a student, the key
    inline  `<think>\\n{trace}\\n</think>\\n\\n{answer}` as the assistant's content
    drop    the answer alone

KD rows learn the student's rendering of the whole turn: trace and answer tokens are aligned
to the teacher's (whose logprobs cover both) part by part, and the template's own tokens
between them are learned by cross-entropy only (`alignment.align_turn`).
"""

from __future__ import annotations

from typing import Any

from synthdistill.alignment import AnswerTargets, align_turn
from synthdistill.chat_tokens import renders_reasoning_content, turn_text
from synthdistill.config import DistillConfig
from synthdistill.model_store import resolve_tokenizer
from synthdistill.records import HarvestRecord
from synthdistill.thinking import part_offsets

TRACE_NOTES = {
    "key": "The teacher's reasoning traces are kept in a `reasoning_content` key of each assistant message "
    "(the student's chat template renders it).",
    "inline": "The teacher's reasoning traces are kept inline: each assistant message is "
    "`<think>\\n{trace}\\n</think>\\n\\n{answer}`.",
    "drop": "The teacher's reasoning traces were dropped: assistant messages hold the answers alone.",
}


def trace_style(config: DistillConfig, records: list[HarvestRecord]) -> str:
    """key, inline or drop: how this build writes traces (keep is settled by rendering the student's template)."""
    mode = config.datasets.reasoning
    if mode != "keep":
        return mode
    if config.student is None or not any(r.reasoning is not None for r in records):
        return "key"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_tokenizer(config.student.model, config.project_dir))
    return "key" if renders_reasoning_content(tokenizer) else "inline"


def _pieces(record: HarvestRecord, tokenizer) -> tuple[list[str], list[list[str]], tuple[int | None, int]] | None:
    """Teacher token strings (and top-k strings) in which trace and answer are found, with their offsets.

    Token strings as the server sent them first; failing that (vLLM's `token_id:N` spellings),
    the ids decoded by the student's tokenizer when they are its own.
    """
    found = part_offsets("".join(record.tokens), record.reasoning, record.text)
    if not isinstance(found, str):
        return record.tokens, record.top_tokens, found
    vocab = len(tokenizer)
    ids = [record.token_ids or [], *(record.top_ids or [])]
    if not record.token_ids or record.top_ids is None or any(not 0 <= i < vocab for row in ids for i in row):
        return None
    tokens = [tokenizer.decode([i]) for i in record.token_ids]
    found = part_offsets("".join(tokens), record.reasoning, record.text)
    if isinstance(found, str):
        return None
    return tokens, [[tokenizer.decode([i]) for i in row] for row in record.top_ids], found


def turn_targets(
    record: HarvestRecord, messages: list[dict[str, Any]], tokenizer, mapper, max_unmapped_mass: float
) -> tuple[AnswerTargets | None, Any]:
    """(targets, {part: (student tokens, with targets)}) of a thinking record's SFT turn, or (None, drop reason)."""
    pieces = _pieces(record, tokenizer)
    if pieces is None:
        return None, "trace-not-found-in-logprobs"
    tokens, top_tokens, (trace_at, answer_at) = pieces
    text, trace_range, answer_range = turn_text(tokenizer, messages[:-1], messages[-1])
    parts = [("answer", answer_range, answer_at)]
    if trace_range is not None and trace_at is not None:
        parts.insert(0, ("trace", trace_range, trace_at))
    return align_turn(
        text,
        parts,
        tokens,
        record.token_logprobs,
        top_tokens,
        record.top_logprobs,
        tokenizer,
        max_unmapped_mass=max_unmapped_mass,
        single_token_id=mapper,
    )
