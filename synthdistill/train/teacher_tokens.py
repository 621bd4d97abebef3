"""A local teacher with another tokenizer: its own tokens of each KD row, and the byte segments both sides cover.

Feature and relation KD need the teacher's hidden states over the same conversation. When
the teacher's tokenizer is the student's, the student's ids are fed to it as they are. When
it differs:

- **What the teacher reads.** The prompt is rendered with the teacher's own chat template
  (its own system prompt and turn markers, the messages taken from the SFT split's row with
  the same `row_id`), so its hidden states are the ones it has at inference; a teacher without
  a chat template (a base model) reads the student's rendered prompt as text instead. The answer
  is the student's answer (the row's labelled tokens, decoded, end-of-turn token left out)
  tokenized by the teacher: both sides read exactly the same answer bytes.
- **Which positions are paired.** Each side's answer tokens get their byte spans from the
  tokenizer's offsets (`alignment.student_tokens`; tokens that share one character's span,
  the pieces of a byte-level BPE split character, count as one). A *segment* runs from a byte
  where a token starts on both sides to the next byte where a token ends on both sides, each
  side's tokens covering it without a gap: one token each where the boundaries coincide,
  otherwise the shortest groups of consecutive tokens that cover the same bytes. Each segment's
  hidden states are mean-pooled on each side and the feature loss compares the pooled pairs
  (loss_parts.segment_means). Student tokens after a point where the decoded answer does not
  tokenize back to the row's ids get no segment.
- **Relations** pool each side over its own answer tokens (the teacher's are its tokens of the
  answer text), so they need no segments.

Online KD (the full-vocabulary KL) compares two distributions over one vocabulary: same
tokenizer only. The share of answer bytes the segments cover is reported in train.json.
"""

from __future__ import annotations

from typing import Any

from synthdistill.alignment import student_tokens
from synthdistill.chat_tokens import IGNORE_INDEX, prompt_token_ids
from synthdistill.config import DistillConfig
from synthdistill.errors import ConfigError
from synthdistill.model_store import resolve_model
from synthdistill.run_layout import TRAIN_SPLIT
from synthdistill.tool_turns import template_messages, template_tools
from synthdistill.train.data import read_rows
from synthdistill.train.local_teacher import needs_local_teacher, teacher_reference

ROW_COLUMNS = ("teacher_input_ids", "teacher_answer", "segments")
# the batch keys CrossTokenizerCollator adds; the trainer hands them to the teacher and the loss
BATCH_KEYS = ("teacher_input_ids", "teacher_attention_mask", "teacher_answer", "student_segment", "teacher_segment")


def same_tokenizer(student_tokenizer, teacher_tokenizer) -> bool:
    """True when the two tokenizers have the same vocabulary (the same ids mean the same tokens)."""
    return student_tokenizer.get_vocab() == teacher_tokenizer.get_vocab()


def token_units(spans: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """(byte start, byte end, first token, last token + 1) of each run of tokens with one byte span.

    Tokens that split a character share that character's span: together they cover it. Empty
    spans (special tokens) are left out.
    """
    units: list[tuple[int, int, int, int]] = []
    for index, (a, b) in enumerate(spans):
        if a == b:
            continue
        if units and units[-1][:2] == (a, b) and units[-1][3] == index:
            units[-1] = (a, b, units[-1][2], index + 1)
        else:
            units.append((a, b, index, index + 1))
    return units


def common_segments(student_spans, teacher_spans) -> list[tuple[int, int, int, int, int]]:
    """(student first, student end, teacher first, teacher end, bytes) of each segment both sides cover.

    A segment starts where a token starts on both sides and ends at the first byte where a token
    ends on both sides, each side's tokens contiguous in between (module docstring).
    """
    s_units, t_units = token_units(student_spans), token_units(teacher_spans)
    segments = []
    i = j = 0
    while i < len(s_units) and j < len(t_units):
        if s_units[i][0] != t_units[j][0]:  # no common start: move the side that is behind
            if s_units[i][0] < t_units[j][0]:
                i += 1
            else:
                j += 1
            continue
        first_i, first_j = i, j
        s_end, t_end = s_units[i][1], t_units[j][1]
        while s_end != t_end:
            if s_end < t_end:
                i += 1
                if i == len(s_units) or s_units[i][0] != s_end:  # a gap on the student's side
                    break
                s_end = s_units[i][1]
            else:
                j += 1
                if j == len(t_units) or t_units[j][0] != t_end:
                    break
                t_end = t_units[j][1]
        if s_end == t_end:
            start = s_units[first_i][0]
            segments.append((s_units[first_i][2], s_units[i][3], t_units[first_j][2], t_units[j][3], s_end - start))
            i, j = i + 1, j + 1
    return segments


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def teacher_row(row: dict[str, Any], conversation, student_tokenizer, teacher_tokenizer) -> tuple[dict, int, int]:
    """The teacher's columns of one KD row, and (answer bytes, bytes covered by segments).

    `conversation` is (messages, tools) of the row's SFT twin, or None; the prompt is then the
    student's, read as text.
    """
    ids, labels = row["input_ids"], row["labels"]
    start = next((t for t, label in enumerate(labels) if label != IGNORE_INDEX), len(ids))
    answer = list(ids[start:])
    special = set(student_tokenizer.all_special_ids)
    while answer and answer[-1] in special:
        answer.pop()
    text = student_tokenizer.decode(answer, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    again, student_spans = student_tokens(student_tokenizer, text)
    student_spans = student_spans[: _common_prefix(again, answer)]
    teacher_ids, teacher_spans = student_tokens(teacher_tokenizer, text)
    prompt = teacher_prompt(row, conversation, student_tokenizer, teacher_tokenizer, start)
    found = common_segments(student_spans, teacher_spans)
    segments = [[s0 + start, s1 + start, t0 + len(prompt), t1 + len(prompt)] for s0, s1, t0, t1, _ in found]
    covered = sum(size for *_, size in found)
    columns = {
        "teacher_input_ids": prompt + teacher_ids,
        "teacher_answer": [len(prompt), len(prompt) + len(teacher_ids)],
        "segments": segments,
    }
    return columns, len(text.encode("utf-8")), covered


def teacher_prompt(row, conversation, student_tokenizer, teacher_tokenizer, start: int) -> list[int]:
    """The prompt in the teacher's chat template when it has one and the messages are known, else the student's as text."""
    if conversation is not None and teacher_tokenizer.chat_template:
        messages, tools = conversation
        kwargs = {"tools": tools} if tools else {}
        return prompt_token_ids(teacher_tokenizer, template_messages(messages[:-1]), **kwargs)
    text = student_tokenizer.decode(row["input_ids"][:start], skip_special_tokens=False)
    return list(teacher_tokenizer(text)["input_ids"])


def conversations(config: DistillConfig) -> dict[str, tuple[list, list | None]]:
    """row_id → (messages, tools) of the SFT train split (the KD rows carry only token ids)."""
    return {
        row["row_id"]: (row["messages"], template_tools(row.get("tools")))
        for row in read_rows(config.layout, "sft", TRAIN_SPLIT)
    }


def teacher_token_rows(config: DistillConfig, rows: list[dict[str, Any]], student_tokenizer, collator):
    """(rows, collator, alignment summary): KD rows with the teacher's columns when its tokenizer differs.

    Unchanged (and summary None) without a local teacher or with the student's tokenizer. Online
    KD with another tokenizer is a ConfigError.
    """
    from transformers import AutoTokenizer

    kd = config.require_student("train").kd
    if not needs_local_teacher(kd):
        return rows, collator, None
    reference = teacher_reference(config)
    teacher_tokenizer = AutoTokenizer.from_pretrained(resolve_model(reference, config.project_dir))
    if same_tokenizer(student_tokenizer, teacher_tokenizer):
        return rows, collator, None
    if kd.online:
        raise ConfigError(
            f"student.kd.online: the teacher {reference} has a different tokenizer from the student's, and the "
            "full-vocabulary KL compares two distributions over one vocabulary; drop student.kd.online (the stored "
            "top-k kl is aligned across tokenizers by build, and features / relations pool over common byte spans)"
        )
    if not getattr(teacher_tokenizer, "is_fast", False):
        raise ConfigError(f"student.kd.teacher {reference}: pooling over byte spans needs a fast tokenizer (offsets)")
    row_ids = [row["row_id"] for row in read_rows(config.layout, "kd", TRAIN_SPLIT, columns=["row_id"])]
    known = conversations(config) if teacher_tokenizer.chat_template else {}
    out, answer_bytes, covered, with_segments, segments = [], 0, 0, 0, 0
    for row, row_id in zip(rows, row_ids):
        columns, size, matched = teacher_row(row, known.get(row_id), student_tokenizer, teacher_tokenizer)
        out.append({**row, **columns})
        answer_bytes, covered = answer_bytes + size, covered + matched
        with_segments += bool(columns["segments"])
        segments += len(columns["segments"])
    templated = sum(row_id in known for row_id in row_ids)
    summary = {
        "tokenizer": "different: hidden states mean-pooled over common byte segments",
        # how the teacher read the prompts: its own chat template (all rows), the student's prompt as text, or mixed
        "teacher_prompt": {len(row_ids): "teacher-chat-template", 0: "student-prompt-as-text"}.get(templated, "mixed"),
        "rows": len(out),
        "rows_with_segments": with_segments,
        "segments": segments,
        "answer_bytes": answer_bytes,
        "matched_bytes": covered,
        "matched_share": round(covered / answer_bytes, 4) if answer_bytes else 0.0,
    }
    return out, CrossTokenizerCollator(collator, teacher_tokenizer.pad_token_id or 0), summary


class CrossTokenizerCollator:
    """The student's batch (`inner`) plus the teacher's padded ids and, per position, its segment in the batch.

    `student_segment` [B, T] and `teacher_segment` [B, T_teacher] hold a segment's index within
    the batch at each of its tokens, -1 elsewhere; `teacher_answer` marks the teacher's answer tokens.
    """

    def __init__(self, inner, teacher_pad_id: int):
        self.inner = inner
        self.teacher_pad_id = teacher_pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.inner([{k: v for k, v in row.items() if k not in ROW_COLUMNS} for row in rows])
        length = max(len(row["teacher_input_ids"]) for row in rows)
        teacher_ids = torch.full((len(rows), length), self.teacher_pad_id, dtype=torch.long)
        teacher_mask = torch.zeros((len(rows), length), dtype=torch.long)
        teacher_answer = torch.zeros((len(rows), length), dtype=torch.bool)
        student_segment = torch.full(batch["input_ids"].shape, -1, dtype=torch.long)
        teacher_segment = torch.full((len(rows), length), -1, dtype=torch.long)
        index = 0
        for b, row in enumerate(rows):
            ids = row["teacher_input_ids"]
            teacher_ids[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            teacher_mask[b, : len(ids)] = 1
            teacher_answer[b, row["teacher_answer"][0] : row["teacher_answer"][1]] = True
            for s0, s1, t0, t1 in row["segments"]:
                student_segment[b, s0:s1] = index
                teacher_segment[b, t0:t1] = index
                index += 1
        batch.update(
            teacher_input_ids=teacher_ids,
            teacher_attention_mask=teacher_mask,
            teacher_answer=teacher_answer,
            student_segment=student_segment,
            teacher_segment=teacher_segment,
        )
        return batch
