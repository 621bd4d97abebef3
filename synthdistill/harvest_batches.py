"""The harvester's side of a batch teacher: budget, ledger and tallies around submit / poll / collect.

    a killed run's intents (recorded, batch id unknown) → teacher.resume finds their batches
    → reserve the worst case of requests already in open batches (earlier, killed runs)
    → the pending requests in no open batch, as many as the budget allows → teacher.batch_files
      (the provider's limits) → per file: the intent to the ledger → teacher.submit
    → the batch id goes to the ledger → for each open batch: teacher.poll until it ends
    → teacher.collect → each answer stored as a HarvestRecord, each error a failure
    → each request the ended batch never answered a failure → the batch marked collected.

The intent (a client-made id and the request keys) is committed before the file is uploaded,
and its id travels in the file's name and the batch's metadata; the batch id is committed
before the first poll. So a run killed at any point resumes on the next run: a batch created
but never written to the ledger is found by its metadata, a file uploaded without its batch
gets one, and the requests are collected, never sent twice. Only requests in no open batch
go into a new one. A failure is retried by the next run, like every harvest failure.

No list of the pending requests is held: the plan is walked (`RequestPlan.pending()`) to cut the
input files as they fill, once to reserve the budget of requests already in open batches, and
once per batch collected, to find that batch's requests (at most `batch_max_requests`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from synthdistill.records import TeacherRequest
from synthdistill.teachers import BatchFailure, BatchTeacher

if TYPE_CHECKING:  # for annotations only: harvest.py imports this module
    from synthdistill.harvest import HarvestRun
    from synthdistill.harvest_plan import PlannedRequest, RequestPlan

log = logging.getLogger(__name__)


async def drive_batches(run: HarvestRun, teacher: BatchTeacher, plan: RequestPlan) -> int:
    """Resume the open batches, submit the rest in new ones, collect every open batch; the requests not sent."""
    batches = _Batches(run, teacher, plan)
    await batches.resume_intents()
    batches.reserve_open()
    not_sent = await batches.submit_pending()
    for row in run.store.open_batches():
        await batches.collect(row)
    return not_sent


class _Batches:
    """The plan's pending requests and what each in flight has reserved of the budget, across one run's batches."""

    def __init__(self, run: HarvestRun, teacher: BatchTeacher, plan: RequestPlan):
        self.run, self.teacher, self.plan = run, teacher, plan
        self.reserved: dict[str, float] = {}  # only requests with a non-zero reservation

    def _among(self, keys: set[str]) -> Iterator[PlannedRequest]:
        """The pending requests whose key is in `keys`, in plan order (one walk of the plan)."""
        return (item for item in self.plan.pending() if item.request.request_key in keys)

    async def resume_intents(self) -> None:
        """Find the batches of intents a killed run recorded without their batch id (never submit them again)."""
        store = self.run.store
        for intent in store.open_intents():
            found = await self.teacher.resume(intent["intent_id"], intent["input_file_id"])
            if found is None:  # nothing reached the provider: the requests go into a new batch
                store.drop_batch_intent(intent["intent_id"])
                continue
            file_id, batch = found
            store.put_batch(
                batch["id"], file_id, intent["request_keys"], batch.get("status", "validating"), intent["intent_id"]
            )
            log.info("found batch %s of an interrupted submission", batch["id"])

    def reserve_open(self) -> None:
        """Reserve the worst case of requests already in open batches: they are paid for whatever the budget says."""
        in_open = {key for batch in self.run.store.open_batches() for key in batch["request_keys"]}
        for item in self._among(in_open) if in_open else ():
            self._hold(item.request.request_key, self.run.reserve(item) or 0.0)

    def _hold(self, key: str, amount: float) -> None:
        if amount:
            self.reserved[key] = amount

    async def submit_pending(self) -> int:
        """Put the pending requests in no open batch, as many as the budget allows, into new batches
        (as many as the provider's per-file limits take), each file cut as the plan's walk fills it.

        Returns how many the budget left out (not sent, left for a later run).
        """
        in_open = {key for batch in self.run.store.open_batches() for key in batch["request_keys"]}
        candidates = (item for item in self.plan.pending() if item.request.request_key not in in_open)
        left_out = 0

        def affordable() -> Iterator[TeacherRequest]:
            nonlocal left_out
            for item in candidates:
                amount = self.run.reserve(item)
                if amount is None:  # the budget is spent: the rest are counted, not sent
                    left_out = 1 + sum(1 for _ in candidates)
                    return
                self._hold(item.request.request_key, amount)
                yield item.request

        store = self.run.store
        for requests, data in self.teacher.batch_files(affordable()):
            keys = [request.request_key for request in requests]
            if data is None:
                limit = self.run.config.teacher.batch_max_bytes
                (item,) = self._among({keys[0]})
                self._fail(
                    item, "batch-line-too-large", f"its batch line is larger than teacher.batch_max_bytes ({limit})"
                )
                continue
            intent_id = uuid.uuid4().hex
            # committed before the upload: a crash from here on finds this batch (or its file) instead of resubmitting
            store.put_batch_intent(intent_id, keys)
            file_id, batch = await self.teacher.submit(
                data, intent_id, on_uploaded=lambda file_id, i=intent_id: store.set_intent_file(i, file_id)
            )
            store.put_batch(batch["id"], file_id, keys, batch.get("status", "validating"), intent_id)
            self.run.count_sent(keys)
            log.info("submitted batch %s with %d requests", batch["id"], len(keys))
        return left_out

    async def collect(self, row: dict) -> None:
        """Wait for one batch, store its answers and errors, and mark it collected in the ledger."""
        batch_id = row["batch_id"]
        started = time.perf_counter()
        batch = await self.teacher.poll(batch_id, lambda status: self.run.store.set_batch_status(batch_id, status))
        latency_ms = (time.perf_counter() - started) * 1000 / max(1, len(row["request_keys"]))
        # answers of requests done earlier or no longer planned (a smaller limit) are not asked for
        by_key = {item.request.request_key: item for item in self._among(set(row["request_keys"]))}
        results = await self.teacher.collect(batch, {key: item.request for key, item in by_key.items()})
        for key, result in results.items():
            if isinstance(result, BatchFailure):
                self._fail(by_key[key], result.kind, result.message)
            else:
                self.run.store_answer(by_key[key], result, 1, latency_ms, self.reserved.pop(key, 0.0))
        status = batch.get("status")
        for key, item in by_key.items():
            if key not in results:
                # a batch that failed validation, expired or was cancelled leaves lines unanswered
                self._fail(item, f"batch-{status}", f"batch {batch_id} ended '{status}' without answering")
        self.run.store.set_batch_status(batch_id, status, collected=True)

    def _fail(self, item: PlannedRequest, kind: str, message: str) -> None:
        self.run.release(self.reserved.pop(item.request.request_key, 0.0))
        self.run.store_failure(item, kind, message, 1)
