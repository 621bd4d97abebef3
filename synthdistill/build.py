"""The build stage: filtered records → SFT and KD datasets (Parquet, Hugging Face layout).

    datasets/sft/  messages, prompt_id, pack, teacher       (splits train / validation)
    datasets/kd/   input_ids, labels, kd_ids, kd_logprobs, kd_mask (student tokens)

Splits are by prompt, never the same prompt in both. The KD dataset needs captured
logprobs and a configured student. Record by record: where the teacher's token ids are
the student's (same tokenizer) the targets are exact; otherwise the teacher's tokens are
aligned to the student's by byte offsets (synthdistill/alignment.py) and positions that
do not line up are masked. `coverage` is the share of answer tokens with KD targets.

Both datasets are plain Parquet with a dataset card, and the held-out split is named
`validation`, the name `datasets` infers from the file names: `datasets.load_dataset(str(folder))`
(the card's `configs` name the splits), `load_dataset("parquet", data_dir=str(folder / "data"))`
and `load_dataset("parquet", data_files={"train": ..., "validation": ...})` all give
`train` and `validation`; `load_from_disk` reads `save_to_disk` folders only, so call
`.save_to_disk()` on the loaded DatasetDict for that.
"""

from __future__ import annotations

import json
import shutil
from array import array
from typing import Any

from pydantic import BaseModel

from synthdistill.alignment import AnswerTargets, align_answer, exact_targets, single_token_mapper
from synthdistill.arrow_lists import FlatRows
from synthdistill.batches import ordered_map
from synthdistill.build_shards import KdStats, ShardedSplits, count, record_tasks, survey
from synthdistill.build_traces import TRACE_NOTES, trace_style, turn_targets
from synthdistill.chat_tokens import IGNORE_INDEX, assistant_message, prompt_token_ids
from synthdistill.config import DistillConfig
from synthdistill.dataset_cards import provenance, write_card
from synthdistill.dataset_schemas import kd_schema, sft_schemas
from synthdistill.flat_targets import FlatTargets, exact_flat_targets, logprobs_on_grid, target_rows
from synthdistill.harvest_embeddings import embeddings_note, stored_vectors
from synthdistill.held_out import HeldOut
from synthdistill.model_store import resolve_tokenizer
from synthdistill.policy import recheck_use
from synthdistill.records import HarvestRecord, with_array_lists
from synthdistill.run_layout import HELD_OUT_SPLIT, TRAIN_SPLIT
from synthdistill.safe_write import write_text
from synthdistill.tool_turns import (
    check_renders_tools,
    final_calls,
    sft_tool_fields,
    stored_message,
    template_messages,
    tool_call_targets,
)

# A position keeps its KD targets only if the teacher candidates that are not one student
# token carry at most this probability (synthdistill/alignment.py, rule 4).
MAX_UNMAPPED_MASS = 0.1
# Student ids fit two bytes up to this vocabulary size (SmolLM2: 49152); larger ones take four.
UINT16_VOCAB = 65536


class BuildSummary(BaseModel):
    sft_rows: dict[str, int]
    kd_rows: dict[str, int] | None
    kd_skipped_reason: str | None
    kd_coverage: float | None
    kd_dropped: dict[str, int]
    sft_dir: str
    kd_dir: str | None


def sft_row(record: HarvestRecord, traces: str = "drop", tools: bool = False) -> dict[str, Any]:
    """An SFT row; `traces` (key, inline or drop) says how a thinking teacher's trace is kept.

    With `tools` (a build with tool packs) every message has the tool keys, the final one the
    teacher's `tool_calls`, and the row a `tools` column (synthdistill/tool_turns.py).
    """
    messages = [m.model_dump() for m in record.messages] + [assistant_message(record.text, record.reasoning, traces)]
    row = {
        "row_id": record.request_key,
        "prompt_id": record.prompt_id,
        "request_key": record.request_key,
        "pack": record.pack,
        "teacher": record.model_answered,
        "messages": messages,
    }
    if tools:
        messages[-1]["tool_calls"] = final_calls(record)
        row["messages"] = [stored_message(m) for m in messages]
        row.update(sft_tool_fields(record))
    return row


def kd_row(
    record: HarvestRecord,
    prompt_ids: list[int],
    targets: AnswerTargets | FlatTargets,
    eos_id: int,
    max_length: int,
    logprob_step: float | None = None,
) -> dict[str, Any] | None:
    """A KD row: kd arrays aligned with `input_ids` (index t holds the targets of token t itself)."""
    answer_ids = list(targets.student_ids)
    lengths, ids, logprobs = target_rows(targets)
    if logprob_step:
        logprobs = logprobs_on_grid(ids, logprobs, lengths, answer_ids, logprob_step)
    if not answer_ids or answer_ids[-1] != eos_id:
        answer_ids.append(eos_id)  # API teachers do not return their stop token: learn it by CE only
        lengths = [*lengths, 0]
    input_ids = (prompt_ids + answer_ids)[:max_length]
    if len(input_ids) <= len(prompt_ids):
        return None
    lengths = [0] * len(prompt_ids) + lengths[: len(input_ids) - len(prompt_ids)]
    used = sum(lengths)
    return {
        "row_id": record.request_key,
        "prompt_id": record.prompt_id,
        "request_key": record.request_key,
        "pack": record.pack,
        "input_ids": input_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + input_ids[len(prompt_ids) :],
        # flat, with the candidates per position: the Parquet list<list<>> layout (arrow_lists)
        "kd_ids": FlatRows(ids[:used], lengths),
        "kd_logprobs": FlatRows(logprobs[:used], lengths),
        "kd_mask": [1 if n else 0 for n in lengths],
    }


def same_tokenizer(record: HarvestRecord, tokenizer, eos_id: int) -> bool:
    """True when the record's token ids decode, with the student's tokenizer, to its exact text."""
    flat = record.flat_arrays
    if flat is not None:
        if flat["token_ids"] is None or flat["top_ids"] is None:
            return False
        token_ids = flat["token_ids"][0].tolist()
        bounds = [(int(a.min()), int(a.max())) for a in (flat["token_ids"][0], flat["top_ids"][0]) if len(a)]
    else:
        if record.token_ids is None or record.top_ids is None:
            return False
        token_ids = record.token_ids
        rows = [row for row in [record.token_ids, *record.top_ids] if row]
        bounds = [(min(map(min, rows)), max(map(max, rows)))] if rows else []
    vocab = len(tokenizer)  # ids of a larger vocabulary cannot be the student's
    if not token_ids or any(low < 0 or high >= vocab for low, high in bounds):
        return False
    ids = [t for t in token_ids if t != eos_id]
    return tokenizer.decode(ids, skip_special_tokens=False) == record.text


def record_targets(
    record: HarvestRecord, tokenizer, eos_id: int, single_token_id
) -> AnswerTargets | FlatTargets | None:
    """KD targets on the student's tokens: exact ids when the tokenizer is the teacher's, else aligned."""
    if record.reasoning is not None:
        return None  # a thinking teacher's logprobs cover its trace too: turn_targets aligns both parts
    flat = record.flat_arrays
    tokens, top_tokens = (
        (flat["tokens"], flat["top_tokens"]) if flat is not None else (record.tokens, record.top_tokens)
    )
    if not record.has_logprobs or tokens is None or top_tokens is None:
        return None
    same = same_tokenizer(record, tokenizer, eos_id)
    targets = exact_flat_targets(flat) if same and flat is not None else None
    if targets is not None:
        return targets
    record = with_array_lists(record)  # ragged top lists or another tokenizer: the list paths
    if same:
        return exact_targets(record.token_ids, record.token_logprobs, record.top_ids, record.top_logprobs)
    return align_answer(
        record.text,
        record.tokens,
        record.token_logprobs,
        record.top_tokens,
        record.top_logprobs,
        tokenizer,
        max_unmapped_mass=MAX_UNMAPPED_MASS,
        single_token_id=single_token_id,
    )


def run(config: DistillConfig, workers: int = 1) -> BuildSummary:
    """Write datasets/sft (always) and datasets/kd (when logprobs and a student exist).

    Two passes over the kept records (synthdistill/build_shards.py): a survey, then the rows,
    a batch at a time, in `workers` processes (the same files for any number of them).
    """
    decision = recheck_use(config, "build")
    found = survey(config)
    held_out = HeldOut(found.prompt_ranks, config.datasets.eval_fraction, config.datasets.seed)
    found.prompt_ranks = array("Q")
    layout = config.layout
    info = provenance(config, found.facts, decision)

    traces = trace_style(config, found.with_reasoning)
    info["reasoning"] = TRACE_NOTES[traces] if found.with_reasoning else None
    tools = found.tools
    if tools and config.student is not None:
        check_renders_tools(_student_tokenizer(config), config.student.model, config.path)

    reason = None
    if config.harvest.top_logprobs == 0 or not found.logprobs:
        reason = "no logprobs were captured (harvest.top_logprobs is 0 or the teacher sent none)"
    elif config.student is None:
        reason = "no `student` section in the config: KD rows are tokenized for the student"
    kd = KdMaker(config, traces) if reason is None else None

    tasks, load = record_tasks(config)
    sft_out = ShardedSplits(layout, "sft", *sft_schemas(tools))
    kd_out = ShardedSplits(layout, "kd", kd_schema(kd.id_type, kd.vectors is not None)) if kd is not None else None

    def tables_of(task) -> tuple[dict, dict, KdStats]:
        """One batch's rows as Arrow tables per split (in a worker: this process only writes them)."""
        records = load(task)
        sft = sft_out.tables([(split_of(r, held_out), sft_row(r, traces, tools)) for r in records])
        stats = KdStats()
        made = [] if kd is None else [(split_of(r, held_out), kd.row(r, stats)) for r in records]
        kd_tables = kd_out.tables([(split, row) for split, row in made if row is not None]) if kd_out else {}
        return sft, kd_tables, stats

    stats = KdStats()
    for sft_tables, kd_tables, batch_stats in ordered_map(tables_of, tasks, workers):
        sft_out.add(sft_tables)
        if kd_out is not None:
            kd_out.add(kd_tables)
        stats.merge(batch_stats)
    sft_counts = sft_out.close()
    write_card("sft", config, decision, info, sft_counts)

    kd_counts, coverage, dropped = None, None, {}
    if kd is not None:
        kd_counts = kd_out.close()
        coverage, dropped, reason = stats.coverage(), stats.dropped, stats.refusal()
        if reason is None:
            kd.finish(stats, decision, info, kd_counts)
        else:
            kd_counts = None
    kd_dir = layout.dataset_dir("kd")
    if kd_counts is None and kd_dir.exists():
        shutil.rmtree(
            kd_dir
        )  # a stale KD dataset from an earlier build (or this one's empty one) must not be trained on
    return BuildSummary(
        sft_rows=sft_counts,
        kd_rows=kd_counts,
        kd_skipped_reason=reason,
        kd_coverage=coverage,
        kd_dropped=dropped,
        sft_dir=str(layout.dataset_dir("sft")),
        kd_dir=str(kd_dir) if kd_counts is not None else None,
    )


def split_of(record: HarvestRecord, held_out: HeldOut) -> str:
    """The split a record's rows go to (by prompt: never the same prompt in both)."""
    return HELD_OUT_SPLIT if record.prompt_id in held_out else TRAIN_SPLIT


def _student_tokenizer(config: DistillConfig):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_tokenizer(config.student.model, config.project_dir))


class KdMaker:
    """KD rows for the student, record by record (the tokenizer is loaded once, before any worker forks)."""

    def __init__(self, config: DistillConfig, traces: str):
        self.config, self.traces = config, traces
        self.tokenizer = _student_tokenizer(config)
        self.eos_id = self.tokenizer.eos_token_id
        self.mapper = single_token_mapper(self.tokenizer)
        self.id_type = "uint16" if len(self.tokenizer) <= UINT16_VOCAB else "int32"
        # harvest.embeddings: the teacher's vector of each answer, by request key (None: off)
        self.vectors = stored_vectors(config)

    def row(self, record: HarvestRecord, stats: KdStats) -> dict[str, Any] | None:
        """The record's KD row, or None (counted in `stats.dropped`)."""
        tokenizer = self.tokenizer
        if record.reasoning is not None or record.tool_calls:
            record = with_array_lists(record)  # traces and tool calls take the list paths
        if record.reasoning is not None and record.has_logprobs:
            targets, parts = turn_targets(
                record, sft_row(record, self.traces)["messages"], tokenizer, self.mapper, MAX_UNMAPPED_MASS
            )
            if targets is None:
                count(stats.dropped, parts)
                return None
            for part, (n, kept) in parts.items():
                stats.by_part[part] = [a + b for a, b in zip(stats.by_part.get(part, [0, 0]), (n, kept))]
        elif record.tool_calls and record.has_logprobs:
            targets = tool_call_targets(record, tokenizer, self.mapper, MAX_UNMAPPED_MASS)
            if targets is None:
                count(stats.dropped, "tool-call-not-rendered")
                return None
        else:
            targets = record_targets(record, tokenizer, self.eos_id, self.mapper)
        if targets is None:
            count(stats.dropped, "no-logprobs")
            return None
        stats.answer_tokens += len(targets.student_ids)
        count(stats.matches, targets.spelling if targets.spelling == "exact-ids" else f"aligned-{targets.spelling}")
        for reason, n in targets.masked.items():
            count(stats.masked, reason, n)
        count(stats.alignment, alignment_class(targets))
        prompt_ids = prompt_token_ids(
            tokenizer,
            template_messages([m.model_dump() for m in record.messages]),
            **({"tools": record.answer_format.tools} if record.answer_format and record.answer_format.tools else {}),
        )
        row = kd_row(
            record,
            prompt_ids,
            targets,
            self.eos_id,
            self.config.student.max_length,
            self.config.datasets.kd_logprob_step,
        )
        if row is None:
            count(stats.dropped, "prompt-longer-than-max-length")
            return None
        if self.vectors is not None:
            row["teacher_embedding"] = vector = self.vectors.get(record.request_key)
            stats.embedded[vector is not None] += 1
            if vector is not None:
                stats.embedding_sizes.add(len(vector))
        stats.rows += 1
        stats.with_targets += sum(row["kd_mask"])
        stats.max_candidates = max(stats.max_candidates, max(row["kd_ids"].lengths, default=0))
        return row

    def finish(self, stats: KdStats, decision, info: dict, counts: dict[str, int]) -> None:
        """The tokenizer, build.json and the card beside the written KD rows."""
        config, layout = self.config, self.config.layout
        self.tokenizer.save_pretrained(layout.dataset_tokenizer("kd"))
        build = {
            "student_model": config.student.model,
            # records per case: exact-ids, or aligned-<how the teacher's pieces were read>
            "tokenizer_match": stats.matches,
            "top_k": config.harvest.top_logprobs,
            "max_candidates": stats.max_candidates,
            "kd_ids_dtype": self.id_type,
            "kd_logprob_step": self.config.datasets.kd_logprob_step,
            "logprob_mode": "raw (teacher temperature 1)",
            "max_unmapped_mass": MAX_UNMAPPED_MASS,
            "coverage": stats.coverage(),
            "coverage_definition": "answer tokens (student tokens, every record with logprobs) that have KD targets",
            "masked_positions": stats.masked,
            # records whose every answer token got KD targets (exact), some (partial), none (none)
            "alignment": stats.alignment,
            "dropped": stats.dropped,
            # a thinking teacher's records: per part, the share of its student tokens with KD targets
            "coverage_by_part": {part: round(kept / n, 4) if n else 0.0 for part, (n, kept) in stats.by_part.items()},
            "reasoning": self.traces,
        }
        if self.vectors is not None:
            build["teacher_embeddings"] = embeddings_note(config, stats.embedded, stats.embedding_sizes)
        write_text(layout.dataset_build("kd"), json.dumps(build, indent=2) + "\n", inside=config.run_dir)
        write_card("kd", config, decision, {**info, "kd": build}, counts)


def alignment_class(targets: AnswerTargets) -> str:
    """exact: every answer token has KD targets; partial: some; none: not one."""
    if targets.kept == len(targets.student_ids) and targets.kept:
        return "exact"
    return "partial" if targets.kept else "none"
