"""What training reads: the built datasets as token rows, and the collator that pads them.

Training reads datasets alone (design §2): the SFT rows are tokenized here for the
student (prompt masked, answer learned); the KD rows arrive already tokenized.
"""

from __future__ import annotations

import math
from typing import Any

from synthdistill.chat_tokens import IGNORE_INDEX, answer_token_ids, prompt_token_ids, training_example, turn_text
from synthdistill.errors import StageError
from synthdistill.run_layout import RunLayout
from synthdistill.tool_turns import template_messages, template_tools, tool_turn_text

KD_COLUMNS = ("input_ids", "labels", "kd_ids", "kd_logprobs", "kd_mask")


def read_rows(layout: RunLayout, kind: str, split: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of one split of the `kind` dataset as Python dicts (pyarrow; no datasets cache involved)."""
    import pyarrow.parquet as pq

    paths = layout.split_shards(kind, split)
    if not paths:
        raise StageError(f"{layout.split_file(kind, split)} does not exist: run `synthdistill build` first")
    return [row for path in paths for row in pq.read_table(path, columns=columns).to_pylist()]


def sft_token_rows(rows: list[dict[str, Any]], tokenizer, max_length: int) -> list[dict[str, list[int]]]:
    """SFT conversations → input_ids and labels (loss on the final assistant answer only).

    Earlier turns, `tool` results and user turns included, are the prompt: never learned.
    """
    out = []
    for row in rows:
        messages = row["messages"]
        tools = template_tools(row.get("tools"))
        prompt_ids = prompt_token_ids(
            tokenizer, template_messages(messages[:-1]), **({"tools": tools} if tools else {})
        )
        if messages[-1].get("tool_calls"):  # the student's own rendering of the calls
            turn = tool_turn_text(tokenizer, messages[:-1], messages[-1], tools)
            if turn is None:
                continue
        else:
            turn = turn_text(tokenizer, messages[:-1], messages[-1])[0]  # with a thinking teacher's trace, if kept
        example = training_example(prompt_ids, answer_token_ids(tokenizer, turn), max_length)
        if example is not None:
            out.append(example)
    return out


def kd_token_rows(rows: list[dict[str, Any]], extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """KD rows restricted to the training columns (and `extra` ones, e.g. teacher_embedding)."""
    return [{key: row[key] for key in (*KD_COLUMNS, *extra)} for row in rows]


class PaddingCollator:
    """Pads token rows into a batch; KD candidates pad with id 0 and logprob -inf (never a target)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        length = max(len(row["input_ids"]) for row in rows)
        batch = {
            "input_ids": torch.tensor([_pad(r["input_ids"], length, self.pad_token_id) for r in rows]),
            "attention_mask": torch.tensor([_pad([1] * len(r["input_ids"]), length, 0) for r in rows]),
            "labels": torch.tensor([_pad(r["labels"], length, IGNORE_INDEX) for r in rows]),
        }
        if "kd_ids" in rows[0]:
            k = max((len(c) for r in rows for c in r["kd_ids"]), default=1) or 1
            ids, logprobs = [], []
            for row in rows:
                ids.append([_pad(c, k, 0) for c in row["kd_ids"]] + [[0] * k] * (length - len(row["kd_ids"])))
                logprobs.append(
                    [_pad([float(x) for x in c], k, -math.inf) for c in row["kd_logprobs"]]
                    + [[-math.inf] * k] * (length - len(row["kd_logprobs"]))
                )
            batch["kd_ids"] = torch.tensor(ids, dtype=torch.long)
            batch["kd_logprobs"] = torch.tensor(logprobs, dtype=torch.float32)
            batch["kd_mask"] = torch.tensor([_pad(r["kd_mask"], length, 0) for r in rows], dtype=torch.bool)
        if "teacher_embedding" in rows[0]:  # relations from the harvested embeddings; a row without one is masked
            vectors = [r["teacher_embedding"] for r in rows]
            width = next((len(v) for v in vectors if v), 1)
            batch["teacher_embedding"] = torch.tensor([v or [0.0] * width for v in vectors], dtype=torch.float32)
            batch["teacher_embedding_mask"] = torch.tensor([bool(v) for v in vectors])
        return batch


def _pad(values: list, length: int, fill) -> list:
    return list(values) + [fill] * (length - len(values))
