"""The build's I/O: a survey of the kept records, their batches, and the datasets' sharded Parquet splits.

The build reads `filtered/kept.parquet` twice: once for what it must know before writing a
row (every prompt's rank, for the held-out choice; whether any record has a trace, tools,
logprobs; provenance sums), reading no token arrays; then a row group at a time to make the
rows. Each split is written in shards of `SHARD_ROWS` rows, `<split>-00000-of-00003.parquet`
(the Hub's names), so `load_dataset("parquet", data_files=...)` and the card's `configs`
(`data/<split>-*.parquet`) find them all.
"""

from __future__ import annotations

import os
import shutil
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from synthdistill.arrow_lists import table_from_rows
from synthdistill.config import DistillConfig
from synthdistill.dataset_cards import RecordFacts
from synthdistill.filter_stage import BATCH, kept_batches
from synthdistill.filtered_io import any_logprobs, light_batches, read_row_group, row_groups
from synthdistill.held_out import prompt_rank
from synthdistill.records import HarvestRecord
from synthdistill.run_layout import SHARD_ROWS, SPLITS, RunLayout
from synthdistill.tool_turns import has_tools

WRITE_ROWS = 1000  # rows buffered per split before they are written (one row group)
# Byte-stream-split, without a dictionary, under zstd: the KD targets' top-k ids and float16 logprobs take
# 62.4 B per answer token at k = 20 where pyarrow's defaults (dictionary, snappy) took 80.4 (SmolLM2's real
# top-20: benchmarks/results/kd_precision-2026-12-02.md). Any Parquet reader reads them as before.
BYTE_STREAM_SPLIT = ("kd_ids", "kd_logprobs")


def parquet_options(schema) -> dict[str, Any]:
    """ParquetWriter options of a dataset: zstd; numbers without a dictionary; the KD targets byte-stream-split."""
    import pyarrow as pa

    def leaf(value_type):
        while pa.types.is_list(value_type):
            value_type = value_type.value_type
        return value_type

    numeric = {f.name for f in schema if pa.types.is_integer(leaf(f.type)) or pa.types.is_floating(leaf(f.type))}
    return {
        "compression": "zstd",
        "use_dictionary": [f.name for f in schema if f.name not in numeric],
        "use_byte_stream_split": [
            f"{f.name}.list.element.list.element" for f in schema if f.name in BYTE_STREAM_SPLIT and f.name in numeric
        ],
    }


@dataclass
class Survey:
    """What the build knows of the kept records before it writes a row."""

    seed: int = 0  # datasets.seed: the prompts' ranks for the held-out choice (synthdistill/held_out.py)
    prompt_ranks: array = field(default_factory=lambda: array("Q"))  # 8 bytes a record
    facts: RecordFacts = field(default_factory=RecordFacts)
    with_reasoning: list[HarvestRecord] = field(default_factory=list)  # the first record with a trace, if any
    tools: bool = False
    logprobs: bool = False

    def add(self, records: list[HarvestRecord], logprobs: bool = False) -> None:
        self.prompt_ranks.extend(prompt_rank(r.prompt_id, self.seed) for r in records)
        self.facts.add(records)
        if not self.with_reasoning:
            self.with_reasoning = [r for r in records if r.reasoning is not None][:1]
        self.tools = self.tools or has_tools(records)
        self.logprobs = self.logprobs or logprobs


def _hint(config: DistillConfig) -> str:
    return f"run `synthdistill filter -c {config.path.name}` again to rewrite it"


def survey(config: DistillConfig) -> Survey:
    """Pass one over the kept records (their token arrays are not read from Parquet)."""
    found = Survey(seed=config.datasets.seed)
    layout = config.layout
    if layout.kept.exists():
        for records in light_batches(layout.kept, _hint(config)):
            found.add(records)
        found.logprobs = any_logprobs(layout.kept, _hint(config))
    else:  # a run filtered before the output was Parquet (kept.jsonl), or none: kept_batches says so
        for records in kept_batches(config):
            found.add(records, any(r.has_logprobs for r in records))
    return found


def record_tasks(config: DistillConfig) -> tuple[list, Callable[[Any], list[HarvestRecord]]]:
    """(tasks, load): the units of pass two (row groups) and how one is read, in any process."""
    layout = config.layout
    hint = _hint(config)
    if layout.kept.exists():
        path = layout.kept
        return list(range(row_groups(path, hint))), lambda group: read_row_group(path, hint, group, flat=True)
    return kept_batches(config, BATCH), lambda records: records  # legacy JSON lines: batches read here


class ShardedSplits:
    """Rows of every split of one dataset, appended in order and written in shards; `close()` names them."""

    def __init__(self, layout: RunLayout, kind: str, schema, stored_as=None):
        self.layout, self.kind, self.schema, self.stored_as = layout, kind, schema, stored_as
        self.data = layout.dataset_data_dir(kind)
        if self.data.exists():
            shutil.rmtree(self.data)
        self.data.mkdir(parents=True)
        self.buffers: dict[str, list] = {split: [] for split in SPLITS}  # Arrow tables not written yet
        self.buffered = {split: 0 for split in SPLITS}
        self.shards: dict[str, list] = {split: [] for split in SPLITS}  # temp paths of finished shards
        self.counts = {split: 0 for split in SPLITS}
        self._open: dict[str, tuple[Any, int]] = {}  # split → (writer of its current shard, rows in it)

    def tables(self, rows: list[tuple[str, dict]]) -> dict[str, Any]:
        """(split, row) pairs as one Arrow table per split, as stored: pure, so the build's workers make them."""
        by_split: dict[str, list[dict]] = {}
        for split, row in rows:
            by_split.setdefault(split, []).append(row)
        tables = {split: table_from_rows(rows, self.schema) for split, rows in by_split.items()}
        return {split: t.cast(self.stored_as) if self.stored_as is not None else t for split, t in tables.items()}

    def add(self, tables: dict[str, Any]) -> None:
        """Append each split's table (from `tables`); every `WRITE_ROWS` rows of a split are written as a row group."""
        for split, table in tables.items():
            self.buffers[split].append(table)
            self.buffered[split] += len(table)
            self.counts[split] += len(table)
            while self.buffered[split] >= WRITE_ROWS:
                self._flush(split, WRITE_ROWS)

    def _flush(self, split: str, limit: int | None = None) -> None:
        """Write the first `limit` buffered rows of `split` (all with None) into its shards."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        buffered = pa.concat_tables(self.buffers[split]) if self.buffers[split] else None
        limit = self.buffered[split] if limit is None else limit
        rows = buffered.slice(0, limit).combine_chunks() if buffered is not None else None
        rest = buffered.slice(limit) if buffered is not None else None
        self.buffers[split] = [rest] if rest is not None and len(rest) else []
        self.buffered[split] -= limit
        while rows is not None and len(rows) or split not in self._open and not self.shards[split]:
            writer, held = self._open.get(split) or (None, 0)
            if writer is None:
                path = self.data / f".{split}-{len(self.shards[split]):05d}.parquet.tmp"
                self.shards[split].append(path)
                stored = self.stored_as or self.schema
                writer = pq.ParquetWriter(path, stored, **parquet_options(stored))
            if rows is None:  # a split without rows still gets its (empty) shard
                writer.write_table((self.stored_as or self.schema).empty_table())
            else:
                take, rows = rows.slice(0, SHARD_ROWS - held), rows.slice(SHARD_ROWS - held)
                writer.write_table(take)
                held += len(take)
            if held >= SHARD_ROWS:
                writer.close()
                self._open.pop(split, None)
            else:
                self._open[split] = (writer, held)

    def close(self) -> dict[str, int]:
        """Write what is buffered, close the shards and rename them `<split>-<i>-of-<n>`; rows per split."""
        for split in SPLITS:
            self._flush(split)
            writer, _ = self._open.pop(split, (None, 0))
            if writer is not None:
                writer.close()
            paths = self.shards[split]
            for i, path in enumerate(paths):
                os.replace(path, self.layout.split_file(self.kind, split, i, len(paths)))
        return dict(self.counts)


@dataclass
class KdStats:
    """The KD build's counts, added up batch by batch."""

    dropped: dict[str, int] = field(default_factory=dict)
    matches: dict[str, int] = field(default_factory=dict)
    masked: dict[str, int] = field(default_factory=dict)
    alignment: dict[str, int] = field(default_factory=lambda: {"exact": 0, "partial": 0, "none": 0})
    by_part: dict[str, list[int]] = field(default_factory=dict)
    answer_tokens: int = 0
    with_targets: int = 0
    rows: int = 0
    max_candidates: int = 0
    embedded: list[int] = field(default_factory=lambda: [0, 0])  # KD rows without, with a teacher embedding
    embedding_sizes: set[int] = field(default_factory=set)

    def merge(self, other: KdStats) -> None:
        for mine, theirs in (
            (self.dropped, other.dropped),
            (self.matches, other.matches),
            (self.masked, other.masked),
            (self.alignment, other.alignment),
        ):
            for key, n in theirs.items():
                count(mine, key, n)
        for part, (n, kept) in other.by_part.items():
            self.by_part[part] = [a + b for a, b in zip(self.by_part.get(part, [0, 0]), (n, kept))]
        self.answer_tokens += other.answer_tokens
        self.with_targets += other.with_targets
        self.rows += other.rows
        self.max_candidates = max(self.max_candidates, other.max_candidates)
        self.embedded = [a + b for a, b in zip(self.embedded, other.embedded)]
        self.embedding_sizes |= other.embedding_sizes

    def coverage(self) -> float | None:
        if not self.rows:
            return None
        return round(self.with_targets / self.answer_tokens, 4) if self.answer_tokens else 0.0

    def refusal(self) -> str | None:
        """Why no KD dataset is written, or None."""
        if not self.rows:
            return "no record has logprobs the student's tokens can use"
        if self.coverage() == 0.0:
            return (
                "no answer token got KD targets: the teacher's tokens never line up with the student's "
                f"(masked positions: {self.masked})"
            )
        return None


def count(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n
