"""The harvest scheduler: gate, plan, send with bounded concurrency, store, resume.

    gate (a refusal sends nothing) → plan one request per (prompt, sample), skipping those
    the ledger holds (harvest_plan.py: streamed, 8 bytes kept per pending request) →
    `max_concurrency` workers, each: reserve budget → wait for the rate limiter → ask with
    retries (retrying.py) → commit the answer or the failure.

A batch teacher (`teachers.BatchTeacher`, the OpenAI Batch API) is driven batch by
batch instead (harvest_batches.py), through the same budget, ledger and tallies.

Every answer is committed to the SQLite ledger as it lands, so `kill -9` loses at most
the requests in flight and a re-run sends only what the ledger lacks, including the
failures of earlier runs. A 401/403 stops every worker at once; `harvest.budget_usd`
stops sending, cleanly, before the next request could exceed it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from synthdistill import harvest_embeddings
from synthdistill.api_keys import read_api_key
from synthdistill.config import DistillConfig
from synthdistill.errors import AnsweringModelRefused, RetryableTeacherError
from synthdistill.harvest_batches import drive_batches
from synthdistill.harvest_embeddings import EmbeddingSummary
from synthdistill.harvest_plan import PendingQueue, PlannedRequest, RequestPlan
from synthdistill.harvest_structured import StructuredOutcome, ask_until_valid
from synthdistill.policy import AnsweringModelGate, gate, write_decision
from synthdistill.pricing import (
    Budget,
    Price,
    check_budget_priced,
    prompt_tokens_upper_bound,
    teacher_quote,
)
from synthdistill.rate_limit import RateLimiter
from synthdistill.records import Completion, HarvestRecord, Usage, utc_now
from synthdistill.retrying import FailureBrake, RequestFailed, RetryPolicy, until_first_failure
from synthdistill.safe_write import write_text
from synthdistill.shards import Shard, harvest_digest
from synthdistill.stall_watch import StallWatch
from synthdistill.store import HarvestStore
from synthdistill.teachers import BatchTeacher, Teacher, make_teacher
from synthdistill.teachers.answer_formats import structured_problem


class HarvestObserver(Protocol):
    """Receives progress events (the CLI draws a progress bar from them).

    An observer may also define `paused(seconds, reason)` and `spent(cost_usd)`; both are optional.
    """

    def planned(self, total: int, already_done: int) -> None: ...
    def answered(self, record: HarvestRecord) -> None: ...
    def failed(self, kind: str) -> None: ...
    def retrying(self, kind: str) -> None: ...


class _Silent:
    def planned(self, total: int, already_done: int) -> None:
        pass

    def answered(self, record: HarvestRecord) -> None:
        pass

    def failed(self, kind: str) -> None:
        pass

    def retrying(self, kind: str) -> None:
        pass


class HarvestSummary(BaseModel):
    prompts: int
    requests_planned: int
    already_done: int
    answered: int
    failed: int
    retried_failures: int  # failures of earlier runs sent again by this one
    requests_sent: int
    tokens_in: int
    tokens_out: int
    cost_usd: float | None  # spent by this run; None when no price is known for the teacher
    total_cost_usd: float | None  # every answer in the ledger, earlier runs' included
    budget_usd: float | None
    stopped: str | None  # "budget" when the budget stopped the run before every request was sent
    not_sent: int  # requests left for a later run (budget stop)
    pauses: int  # times every sender paused because the server kept failing
    seconds: float
    errors_by_kind: dict[str, int]
    tool_calls: int = 0  # answers that called a tool
    schema_retries: int = 0  # structured answers asked again because they were not valid (each in the ledger)
    schema_invalid: int = 0  # structured answers kept invalid after the last re-ask (the `schema` filter drops them)
    warnings: list[str] = []  # e.g. thinking knobs the teacher's API style has no field for (each once)
    embeddings: EmbeddingSummary | None = None  # harvest.embeddings: the vectors asked and stored
    policy_id: str | None
    decision: str
    ledger: str
    shard: str | None = None  # "i/N" when this run harvested one shard (`harvest --shard`)
    config_digest: str | None = None  # what was asked (shards.harvest_digest): merge refuses ledgers that differ


def estimated_tokens(item: PlannedRequest) -> int:
    """What the tokens-per-minute bucket charges a request: a rough prompt size plus all of max_tokens."""
    return sum(len(m.content) for m in item.prompt.messages) // 4 + item.request.sampling.max_tokens


def teacher_price(config: DistillConfig) -> Price | None:
    """The teacher's price per token (in-process teachers cost nothing; the Batch API its discounted price)."""
    teacher = config.teacher
    return teacher_quote(teacher.backend, teacher.model, teacher.base_urls, config.project_dir).price


@dataclass
class _Tally:
    requests_sent: int = 0
    answered: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tool_calls: int = 0
    schema_retries: int = 0
    schema_invalid: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1


class HarvestRun:
    """One run over the pending requests: the shared queue, budget, retry policy and tallies.

    However the teacher is driven, its answers and failures reach the ledger through `store_answer` / `store_failure`.
    """

    def __init__(
        self, config: DistillConfig, store: HarvestStore, decision, budget: Budget, observer, failed_before: set[str]
    ):
        self.config, self.store = config, store
        self.answering = AnsweringModelGate(config, decision)
        self.budget, self.observer, self.failed_before = budget, observer, failed_before
        self.teacher = None
        self.tally = _Tally()
        self.not_sent = 0
        self.warnings: list[str] = []
        self.retried_failures = 0
        self.limiter = RateLimiter(config.teacher.requests_per_minute, config.teacher.tokens_per_minute)
        self.brake = FailureBrake()
        self.watch = StallWatch(config.harvest.give_up_after_s, config.harvest.max_pause_s)
        self.policy = RetryPolicy(
            self.limiter,
            self.brake,
            config.teacher.max_retries,
            on_send=self._sent,
            on_retry=self._retrying,
            on_pause=self._paused,
        )

    @property
    def decision(self):
        """The run's decision, with the models the server answered as (and their obligations) added."""
        return self.answering.decision

    def _sent(self) -> None:
        self.tally.requests_sent += 1

    def _retrying(self, exc: RetryableTeacherError) -> None:
        self.tally.error(exc.kind)
        self.observer.retrying(exc.kind)

    def _paused(self, seconds: float, reason: str) -> None:
        self.watch.paused(seconds)
        paused = getattr(self.observer, "paused", None)
        if paused is not None:
            paused(seconds, reason)

    async def run(self, teacher: Teacher, queue: PendingQueue) -> None:
        """Send every pending request with `teacher` (returns early on a budget stop; raises on 401/403)."""
        self.teacher = teacher
        if hasattr(teacher, "on_rate_limits"):
            teacher.on_rate_limits = self.limiter.observe
        workers = [
            asyncio.create_task(self._worker(queue))
            for _ in range(min(self.config.teacher.max_concurrency, len(queue)))
        ]
        if self.config.teacher.backend == "openai":  # an in-process model is slow, not stuck, while it loads
            workers.append(asyncio.create_task(self._watch(workers[:])))
        try:
            await until_first_failure(workers)  # the first auth failure, stuck teacher (or crash) stops them all
        finally:
            self.not_sent = len(queue)

    async def run_batches(self, teacher: BatchTeacher, plan: RequestPlan) -> None:
        """Answer every pending request with a batch teacher: resume open batches, submit the rest, collect."""
        self.teacher = teacher
        self.not_sent = await drive_batches(self, teacher, plan)

    async def _watch(self, senders: list[asyncio.Task]) -> None:
        """Raise TeacherStuck once the teacher has been silent (or paused) too long; end with the senders."""
        from synthdistill.teachers.openai_http import endpoint_host

        hosts = ", ".join(endpoint_host(u) for u in self.config.teacher.base_urls) or self.config.teacher.model
        step = min(1.0, (self.config.harvest.give_up_after_s or 10.0) / 10)
        while not all(task.done() for task in senders):
            self.watch.check(self.tally.errors_by_kind, self.tally.answered, hosts)
            await asyncio.sleep(step)

    async def _worker(self, queue: PendingQueue) -> None:
        while queue and not self.budget.exhausted:
            item = queue.take()
            if item is None:
                return
            reserved = self.reserve(item)
            if reserved is None:
                queue.put_back(item)  # not sent: left for a later run with more budget
                return
            self.retried_failures += item.request.request_key in self.failed_before
            try:
                completion, attempts, latency = await self.policy.ask(
                    self.teacher, item.request, estimated_tokens(item)
                )
            except RequestFailed as exc:
                self.release(reserved)
                self.store_failure(item, exc.kind, exc.message, exc.attempts)
                continue
            except BaseException:
                self.release(reserved)
                raise
            if item.request.answer_format is not None:
                outcome = await ask_until_valid(self, item, StructuredOutcome(completion, attempts, latency, reserved))
                completion, attempts, latency, reserved = (
                    outcome.completion,
                    outcome.attempts,
                    outcome.latency_ms,
                    outcome.reserved,
                )
                self.store_answer(item, completion, attempts, latency, reserved, outcome.retries, outcome.spent)
                continue
            self.store_answer(item, completion, attempts, latency, reserved)

    def estimate(self, item: PlannedRequest) -> int:
        return estimated_tokens(item)

    def reserve(self, item: PlannedRequest) -> float | None:
        """Reserve the worst-case cost of a request; None when the budget cannot cover it."""
        return self.budget.reserve(prompt_tokens_upper_bound(item.prompt.messages), item.request.sampling.max_tokens)

    def release(self, reserved: float) -> None:
        """Give back a reservation whose request was not answered."""
        self.budget.release(reserved)

    def count_sent(self, keys: list[str]) -> None:
        """Count requests sent all at once (a batch), and the earlier failures among them."""
        self.tally.requests_sent += len(keys)
        self.retried_failures += sum(key in self.failed_before for key in keys)

    def store_answer(
        self,
        item: PlannedRequest,
        completion: Completion,
        attempts: int,
        latency_ms: float,
        reserved: float,
        schema_retries: int = 0,
        spent_before: Usage | None = None,
    ) -> None:
        """Admit the answering model, settle the budget, store the answer's record and count it (once per request).

        A structured answer that is still invalid is stored with `schema_error`; `spent_before` (the tokens of
        its failed earlier tries, already settled) is added to the record's usage.
        """
        self._admit(completion.model, reserved)
        decision = self.decision  # read after admit: it names the model that answered
        problem = structured_problem(item.request.answer_format, completion.text)
        record = HarvestRecord.from_completion(
            item.prompt,
            item.request_sent or item.request,
            completion,
            model_requested=self.config.teacher.model,
            backend=self.teacher.backend,
            endpoint=self.teacher.endpoint_for(item.request),
            attempts=attempts,
            latency_ms=latency_ms,
            policy_id=decision.policy_id or "",
            decision=decision.outcome,
            harvested_at=utc_now(),
            schema_retries=schema_retries,
            schema_error=problem,
        )
        cost = self.budget.settle(reserved, record.usage.prompt_tokens, record.usage.completion_tokens)
        if spent_before is not None and (spent_before.prompt_tokens or spent_before.completion_tokens):
            record.usage = Usage(
                prompt_tokens=record.usage.prompt_tokens + spent_before.prompt_tokens,
                completion_tokens=record.usage.completion_tokens + spent_before.completion_tokens,
            )
        self.watch.answered()
        if self.store.put_done(record):  # a request already done is not counted again
            self.tally.answered += 1
            self.tally.tool_calls += bool(record.tool_calls)
            self.tally.schema_invalid += problem is not None
            self.tally.tokens_in += record.usage.prompt_tokens
            self.tally.tokens_out += record.usage.completion_tokens
            self.observer.answered(record)
            spent = getattr(self.observer, "spent", None)
            if spent is not None and self.budget.cost_usd is not None:
                spent(cost)

    def _admit(self, model: str | None, reserved: float) -> None:
        """Before an answer is stored: a server that answers as another model has the gate decide on that model.

        A refusal marks the model in the ledger (its answers never reach a dataset) and stops the run.
        """
        try:
            self.answering.check(model)
        except AnsweringModelRefused as exc:
            self.budget.release(reserved)
            self.store.refuse_model(exc.model, str(exc).split("\n", 1)[0])
            raise

    def store_failure(self, item: PlannedRequest, kind: str, message: str, attempts: int) -> None:
        """Store a request that was not answered (with its last error) so the next run retries it."""
        self.tally.error(kind)
        self.store.put_failed(
            item.request.request_key,
            item.prompt.prompt_id,
            item.prompt.pack,
            item.request.sample_index,
            kind,
            message,
            attempts,
        )
        self.tally.failed += 1
        self.observer.failed(kind)


def _reset_ledger(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


async def run_async(
    config: DistillConfig,
    *,
    limit: int | None = None,
    fresh: bool = False,
    observer=None,
    plan: BaseModel | None = None,
    shard: Shard | None = None,
    requests: RequestPlan | None = None,
) -> HarvestSummary:
    """Run the harvest stage: the policy gate first (a refusal sends nothing), then every pending request.

    `plan` (plan.run's summary for the same limit and fresh) is kept in the run folder for the audit;
    `shard` keeps only that shard's share of the requests (shards.py); `requests`, the plan's pass over
    them (plan.run_with_requests, same limit, fresh and shard, under the same lock), saves planning again.
    """
    observer = observer or _Silent()
    started = time.perf_counter()
    decision = gate(config)  # raises PolicyDenied before a single request
    embeddings, decision = harvest_embeddings.prepare(config, decision)  # the embedding model is gated too
    # every prompt rendered and checked (pack errors, what the teacher cannot take) before anything is sent
    checked = requests or RequestPlan.make(config, limit=limit, shard=shard)
    api_key = read_api_key(config)
    price = teacher_price(config)
    check_budget_priced(price, config.harvest.budget_usd, config.teacher.model, config.path)

    path = config.layout.ledger
    if fresh:
        _reset_ledger(path)
    write_decision(config.layout, decision)
    if plan is not None:
        write_text(config.layout.plan, plan.model_dump_json(indent=2) + "\n", inside=config.layout.run_dir)

    with HarvestStore(path) as store:
        spent_before = price.cost(*store.usage_totals()) if price is not None else 0.0
        spent_before += harvest_embeddings.spent_usd(embeddings, store)
        budget = Budget(price, config.harvest.budget_usd, spent_before)
        run_id = store.start_run()
        # the ledger's answers looked up a chunk at a time: 8 bytes are kept per request still to send
        if not fresh and requests is None:
            requests = RequestPlan.make(config, limit=limit, shard=shard, done_among=store.done_among)
        requests = requests or checked
        failed_before = {f["request_key"] for f in store.failures()}
        observer.planned(requests.requests, requests.held)
        run = HarvestRun(config, store, decision, budget, observer, failed_before)
        try:
            await _send(run, requests, api_key)
            embedded = await harvest_embeddings.harvest_embeddings(run, embeddings) if embeddings else None
        finally:
            if run.decision is not decision:  # the server answered as other models: the decision records them
                write_decision(config.layout, run.decision)
        tally = run.tally
        summary = HarvestSummary(
            prompts=requests.prompts,
            requests_planned=requests.requests,
            already_done=requests.held,
            answered=tally.answered,
            failed=tally.failed,
            retried_failures=run.retried_failures,
            requests_sent=tally.requests_sent,
            tokens_in=tally.tokens_in,
            tokens_out=tally.tokens_out,
            cost_usd=budget.cost_usd,
            total_cost_usd=budget.total_usd,
            budget_usd=config.harvest.budget_usd,
            stopped="budget" if budget.exhausted else None,
            not_sent=run.not_sent,
            pauses=run.brake.pauses,
            seconds=round(time.perf_counter() - started, 3),
            errors_by_kind=tally.errors_by_kind,
            tool_calls=tally.tool_calls,
            schema_retries=tally.schema_retries,
            schema_invalid=tally.schema_invalid,
            warnings=run.warnings,
            embeddings=embedded,
            policy_id=decision.policy_id,
            decision=decision.outcome,
            ledger=str(path),
            shard=str(shard) if shard is not None else None,
            config_digest=harvest_digest(config),
        )
        store.finish_run(run_id, summary.model_dump())
    return summary


async def _send(run: HarvestRun, requests: RequestPlan, api_key: str | None) -> None:
    if not requests.to_send:
        return
    teacher = make_teacher(run.config.teacher, api_key=api_key, project_dir=run.config.project_dir)
    try:
        if isinstance(teacher, BatchTeacher):  # files cut at the provider's limits as the plan's walk fills them
            await run.run_batches(teacher, requests)
        else:
            await run.run(teacher, PendingQueue(requests.pending(), requests.to_send))
    finally:
        run.warnings = list(getattr(getattr(teacher, "knob_warnings", None), "messages", []))
        await teacher.aclose()


def run(
    config: DistillConfig,
    *,
    limit: int | None = None,
    fresh: bool = False,
    observer=None,
    plan: BaseModel | None = None,
    shard: Shard | None = None,
    requests: RequestPlan | None = None,
) -> HarvestSummary:
    """Synchronous entry point of the harvest stage."""
    return asyncio.run(
        run_async(config, limit=limit, fresh=fresh, observer=observer, plan=plan, shard=shard, requests=requests)
    )
