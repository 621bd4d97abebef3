"""The filter pipeline over a stream of batches, with the same result as `run_filters` on all records at once.

Steps run in three parts, by their `mode` (filters/__init__.py):

1. each batch is loaded (`load(task)`: e.g. a row-id range of the ledger, read and parsed)
   and the leading per-record steps run on it, in `workers` processes when asked
   (synthdistill/batches.py: results come back in batch order, whatever the number of workers);
2. then, in this process and in order, the steps that stream (`dedup`: it keeps hashes and
   MinHash signatures, never records);
3. from the first step that must see every record (`select`, a plug-in) on, the survivors are
   held until the last batch and those steps run once on all of them.

A pipeline of per-record and streaming steps (the default) holds one batch at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from synthdistill.batches import ordered_map
from synthdistill.filters import FilterResult, FilterStep, ModifiedRecord, StepReport, apply_step
from synthdistill.records import DroppedRecord, HarvestRecord

Loaded = tuple[list[HarvestRecord], list[DroppedRecord], dict[str, int]]  # records, dropped before any step, counts


@dataclass
class BatchOutput:
    """What one batch (or the final pass) gives: kept records, dropped ones and changes, in pipeline order."""

    kept: list[HarvestRecord] = field(default_factory=list)
    dropped: list[DroppedRecord] = field(default_factory=list)
    modified: list[ModifiedRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # what `load` counted (e.g. stale records)
    tables: tuple | None = None  # (kept, dropped) as Arrow tables when a worker encoded them (`run`'s `encode`)


def _run_steps(
    steps: list[FilterStep], records: list[HarvestRecord], streams=None, first_inputs=None
) -> tuple[FilterResult, list]:
    result = FilterResult(kept=[], dropped=[], steps=[])
    for i, step in enumerate(steps):
        report = StepReport(step.name, step.config_params, 0, 0, 0)
        stream = None if streams is None else streams[i]
        records = apply_step(step, records, result, report, stream, first_inputs if i == 0 else None)
        result.steps.append(report)
    result.kept = records
    return result, result.steps


def add_report(into: StepReport, part: StepReport) -> None:
    """Add a batch's counts of a step to the step's totals."""
    into.input += part.input
    into.kept += part.kept
    into.dropped += part.dropped
    into.modified += part.modified
    for totals, counts in ((into.reasons, part.reasons), (into.modified_reasons, part.modified_reasons)):
        for key, n in counts.items():
            totals[key] = totals.get(key, 0) + n
    into.seconds = round(into.seconds + part.seconds, 4)


class StreamingPipeline:
    """`run(tasks, load)` loads and filters batch after batch; it yields each batch's output, then the held part's."""

    def __init__(self, steps: list[FilterStep], workers: int = 1):
        first_other = next((i for i, s in enumerate(steps) if s.mode != "record"), len(steps))
        first_whole = next((i for i, s in enumerate(steps) if s.mode == "whole"), len(steps))
        self.per_record = steps[:first_other]
        self.streamed = steps[first_other:first_whole]
        self.whole = steps[first_whole:]
        self.streams = [step.stream(step.params) if step.mode == "stream" else None for step in self.streamed]
        self.reports = [StepReport(s.name, s.config_params, 0, 0, 0) for s in steps]
        self.workers = max(1, workers)

    def run(
        self, tasks: Iterable, load: Callable[..., Loaded], encode: Callable | None = None
    ) -> Iterator[BatchOutput]:
        """With `encode(survivors, dropped)` (filtered_io.BatchTables.encode), each worker also encodes its batch as
        Arrow and sends the records back lighter; the output carries the tables (`BatchOutput.tables`)."""
        held: list[HarvestRecord] = []
        # the records come back without their arrays, so only streams (dedup: it drops, reads none) may follow;
        # a per-record step after one may read them or replace a record, and whole steps give records, not batches
        # (in one process there is nothing to send back: the records are written as they are)
        if self.workers == 1 or self.whole or any(step.mode != "stream" for step in self.streamed):
            encode = None
        for result, dropped, counts, inputs, encoded in self._per_record_results(tasks, load, encode):
            out = BatchOutput(dropped=dropped + result.dropped, modified=result.modified, counts=counts)
            self._add(0, result.steps)
            streamed, reports = _run_steps(self.streamed, result.kept, self.streams, inputs)
            self._add(len(self.per_record), reports)
            out.dropped += streamed.dropped
            out.modified += streamed.modified
            if self.whole:
                held += streamed.kept
            else:
                out.kept = streamed.kept
                if encoded is not None:
                    out.tables = encoded.finish(result.kept, streamed.kept, streamed.dropped)
            yield out
        if self.whole:
            final, reports = _run_steps(self.whole, held)
            self._add(len(self.per_record) + len(self.streamed), reports)
            yield BatchOutput(final.kept, final.dropped, final.modified)

    def _per_record_results(self, tasks: Iterable, load: Callable[..., Loaded], encode) -> Iterator[tuple]:
        first = self.streamed[0] if self.streamed else None

        def load_and_filter(task) -> tuple[FilterResult, list[DroppedRecord], dict[str, int], object, object]:
            records, dropped, counts = load(task)
            result = _run_steps(self.per_record, records)[0]
            # the first stream's per-record work (dedup's fingerprints) is done here, in the workers:
            # its records are exactly these survivors
            inputs = first.stream_inputs(result.kept, first.params) if first and first.stream_inputs else None
            encoded = None
            if encode is not None:  # `encode` gives the tables and what is left of the records to count and compare
                encoded, result.kept, dropped = encode(result.kept, dropped + result.dropped)
                result.dropped = []
            return result, dropped, counts, inputs, encoded

        return ordered_map(load_and_filter, tasks, self.workers)

    def _add(self, offset: int, reports: list[StepReport]) -> None:
        for i, report in enumerate(reports):
            add_report(self.reports[offset + i], report)
