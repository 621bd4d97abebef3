"""The harvester's side of a batch teacher: budget, ledger and tallies around submit / poll / collect.

    reserve the worst case of requests already in open batches (earlier, killed runs)
    → the pending requests in no open batch, as many as the budget allows → teacher.submit
    → the batch id goes to the ledger → for each open batch: teacher.poll until it ends
    → teacher.collect → each answer stored as a HarvestRecord, each error a failure
    → each request the ended batch never answered a failure → the batch marked collected.

The batch id is committed to the ledger before the first poll, so a run killed while
the batch is open resumes it on the next run: its requests are collected, never sent
again. Only requests in no open batch go into a new one. A failure is retried by the
next run, like every harvest failure.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from synthdistill.teachers import BatchFailure, BatchTeacher

if TYPE_CHECKING:  # for annotations only: harvest.py imports this module
    from synthdistill.harvest import HarvestRun, PlannedRequest

log = logging.getLogger(__name__)


async def drive_batches(run: HarvestRun, teacher: BatchTeacher, pending: list[PlannedRequest]) -> int:
    """Resume the open batches, submit the rest in a new one, collect every open batch; the requests not sent."""
    batches = _Batches(run, teacher, pending)
    batches.reserve_open()
    not_sent = await batches.submit_pending(pending)
    for row in run.store.open_batches():
        await batches.collect(row)
    return not_sent


class _Batches:
    """The pending requests by key and what each has reserved of the budget, across the batches of one run."""

    def __init__(self, run: HarvestRun, teacher: BatchTeacher, pending: list[PlannedRequest]):
        self.run, self.teacher = run, teacher
        self.by_key = {item.request.request_key: item for item in pending}
        self.requests = {key: item.request for key, item in self.by_key.items()}
        self.reserved: dict[str, float] = {}

    def reserve_open(self) -> None:
        """Reserve the worst case of requests already in open batches: they are paid for whatever the budget says."""
        for batch in self.run.store.open_batches():
            for key in batch["request_keys"]:
                if key in self.by_key and key not in self.reserved:
                    self.reserved[key] = self.run.reserve(self.by_key[key]) or 0.0

    async def submit_pending(self, pending: list[PlannedRequest]) -> int:
        """Put the pending requests in no open batch, as many as the budget allows, into one new batch.

        Returns how many the budget left out (not sent, left for a later run).
        """
        in_open = {key for batch in self.run.store.open_batches() for key in batch["request_keys"]}
        candidates = [item for item in pending if item.request.request_key not in in_open]
        fresh = []
        for item in candidates:
            amount = self.run.reserve(item)
            if amount is None:
                break
            self.reserved[item.request.request_key] = amount
            fresh.append(item)
        if not fresh:
            return len(candidates)
        keys = [item.request.request_key for item in fresh]
        file_id, batch = await self.teacher.submit([item.request for item in fresh])
        # committed before the first poll: a crash from here on resumes this batch instead of resubmitting
        self.run.store.put_batch(batch["id"], file_id, keys, batch.get("status", "validating"))
        self.run.count_sent(keys)
        log.info("submitted batch %s with %d requests", batch["id"], len(fresh))
        return len(candidates) - len(fresh)

    async def collect(self, row: dict) -> None:
        """Wait for one batch, store its answers and errors, and mark it collected in the ledger."""
        batch_id = row["batch_id"]
        started = time.perf_counter()
        batch = await self.teacher.poll(batch_id, lambda status: self.run.store.set_batch_status(batch_id, status))
        latency_ms = (time.perf_counter() - started) * 1000 / max(1, len(row["request_keys"]))
        # answers of requests done earlier or no longer planned (a smaller limit) are not asked for
        results = await self.teacher.collect(batch, self.requests)
        for key, result in results.items():
            if isinstance(result, BatchFailure):
                self._fail(key, result.kind, result.message)
            else:
                self.run.store_answer(self.by_key[key], result, 1, latency_ms, self.reserved.pop(key, 0.0))
        status = batch.get("status")
        for key in row["request_keys"]:
            if key in self.by_key and key not in results:
                # a batch that failed validation, expired or was cancelled leaves lines unanswered
                self._fail(key, f"batch-{status}", f"batch {batch_id} ended '{status}' without answering")
        self.run.store.set_batch_status(batch_id, status, collected=True)

    def _fail(self, key: str, kind: str, message: str) -> None:
        self.run.release(self.reserved.pop(key, 0.0))
        self.run.store_failure(self.by_key[key], kind, message, 1)
