"""The harvest scheduler: gate, plan, send with bounded concurrency, retry, store, resume.

Where retrying is done: here (`_ask_with_retries`). Teachers make one attempt per
call and classify faults; the scheduler decides whether, when and how often to try
again, honouring Retry-After, and records requests whose retries ran out.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from synthdistill.config import DistillConfig
from synthdistill.errors import MissingSecretError, RetryableTeacherError, TeacherAuthError, TeacherError
from synthdistill.rate_limit import RateLimiter
from synthdistill.records import HarvestRecord, Prompt, TeacherRequest, request_key_for
from synthdistill.store import HarvestStore, utc_now

MAX_BACKOFF_S = 60.0


class HarvestObserver(Protocol):
    """Receives progress events (the CLI draws a progress bar from them)."""

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


@dataclass
class PlannedRequest:
    prompt: Prompt
    request: TeacherRequest


class HarvestSummary(BaseModel):
    prompts: int
    requests_planned: int
    already_done: int
    answered: int
    failed: int
    requests_sent: int
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    seconds: float
    errors_by_kind: dict[str, int]
    policy_id: str | None
    decision: str
    ledger: str


def ledger_path(config: DistillConfig) -> Path:
    return config.run_dir / "harvest" / "ledger.sqlite"


def load_prompts(config: DistillConfig, limit: int | None = None) -> list[Prompt]:
    """Every prompt of the configured packs, in pack order, cut to `limit` (or harvest.limit)."""
    from synthdistill.packs import load_pack, resolve_pack_path

    prompts: list[Prompt] = []
    for reference in config.harvest.packs:
        pack = load_pack(resolve_pack_path(reference, config.project_dir))
        prompts.extend(pack.prompts)
    limit = limit if limit is not None else config.harvest.limit
    return prompts[:limit] if limit is not None else prompts


def plan_requests(config: DistillConfig, prompts: list[Prompt]) -> list[PlannedRequest]:
    """One request per (prompt, sample); each sample gets its own seed so samples differ."""
    planned = []
    for prompt in prompts:
        for sample_index in range(config.harvest.samples_per_prompt):
            sampling = config.harvest.sampling(prompt.sampling_overrides)
            if sampling.seed is not None:
                sampling = sampling.model_copy(update={"seed": sampling.seed + sample_index})
            key = request_key_for(config.teacher.model, prompt.messages, sampling, sample_index)
            request = TeacherRequest(request_key=key, messages=prompt.messages, sampling=sampling, sample_index=sample_index)
            planned.append(PlannedRequest(prompt, request))
    return planned


def read_api_key(config: DistillConfig) -> str | None:
    """The key from the environment variable that `teacher.api_key_env` names (never from a file)."""
    name = config.teacher.api_key_env
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise MissingSecretError(
            f"teacher.api_key_env names the environment variable {name}, which is not set; export it first",
            file=config.path,
        )
    return value


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never shorter than the server's Retry-After."""
    exponential = min(MAX_BACKOFF_S, 0.5 * (2 ** (attempt - 1)))
    wait = random.uniform(0, exponential)
    return max(wait, retry_after or 0.0)


@dataclass
class _Tally:
    requests_sent: int = 0
    answered: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1


async def _ask_with_retries(teacher, item: PlannedRequest, max_retries: int, limiter: RateLimiter, tally: _Tally, observer):
    """(completion, attempts, latency_ms) or raise the last RetryableTeacherError when retries run out."""
    attempt = 0
    while True:
        attempt += 1
        await limiter.acquire(item.request.sampling.max_tokens + sum(len(m.content) for m in item.prompt.messages) // 4)
        tally.requests_sent += 1
        started = time.perf_counter()
        try:
            completion = await teacher.complete(item.request)
            return completion, attempt, (time.perf_counter() - started) * 1000.0
        except RetryableTeacherError as exc:
            tally.error(exc.kind)
            if attempt > max_retries:
                raise
            observer.retrying(exc.kind)
            await asyncio.sleep(backoff_seconds(attempt, exc.retry_after))


def _record(config, item: PlannedRequest, teacher, completion, attempts: int, latency_ms: float, decision) -> HarvestRecord:
    logprobs = completion.logprobs.model_dump() if completion.logprobs is not None else {}
    return HarvestRecord(
        request_key=item.request.request_key,
        prompt_id=item.prompt.prompt_id,
        pack=item.prompt.pack,
        pack_version=item.prompt.pack_version,
        sample_index=item.request.sample_index,
        messages=item.prompt.messages,
        variables=item.prompt.variables,
        text=completion.text,
        finish_reason=completion.finish_reason,
        model_requested=config.teacher.model,
        model_answered=completion.model,
        backend=teacher.backend,
        endpoint=teacher.endpoint_for(item.request),
        system_fingerprint=completion.system_fingerprint,
        sampling=item.request.sampling,
        usage=completion.usage,
        latency_ms=round(latency_ms, 2),
        attempts=attempts,
        harvested_at=utc_now(),
        policy_id=decision.policy_id or "",
        decision=decision.outcome,
        **logprobs,
    )


async def harvest_async(config: DistillConfig, *, limit: int | None = None, fresh: bool = False, observer=None) -> HarvestSummary:
    """Run the harvest stage: the policy gate first (a refusal sends nothing), then every pending request."""
    from synthdistill.policy import gate
    from synthdistill.teachers import make_teacher

    observer = observer or _Silent()
    started = time.perf_counter()
    decision = gate(config)  # raises PolicyDenied before a single request
    prompts = load_prompts(config, limit)
    planned = plan_requests(config, prompts)
    api_key = read_api_key(config)

    path = ledger_path(config)
    if fresh and path.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "decision.json").write_text(decision.model_dump_json(indent=2) + "\n")

    tally = _Tally()
    with HarvestStore(path) as store:
        run_id = store.start_run()
        done = store.done_keys()
        pending = [item for item in planned if item.request.request_key not in done]
        observer.planned(len(planned), len(planned) - len(pending))
        if pending:
            teacher = make_teacher(config.teacher, api_key=api_key, base_dir=config.project_dir)
            try:
                await _run_pending(config, teacher, pending, store, decision, tally, observer)
            finally:
                await teacher.aclose()
        summary = HarvestSummary(
            prompts=len(prompts),
            requests_planned=len(planned),
            already_done=len(planned) - len(pending),
            answered=tally.answered,
            failed=tally.failed,
            requests_sent=tally.requests_sent,
            tokens_in=tally.tokens_in,
            tokens_out=tally.tokens_out,
            cost_usd=0.0 if config.teacher.backend == "transformers" else None,
            seconds=round(time.perf_counter() - started, 3),
            errors_by_kind=tally.errors_by_kind,
            policy_id=decision.policy_id,
            decision=decision.outcome,
            ledger=str(path),
        )
        store.finish_run(run_id, summary.model_dump())
    return summary


async def _run_pending(config, teacher, pending, store: HarvestStore, decision, tally: _Tally, observer) -> None:
    limiter = RateLimiter(config.teacher.requests_per_minute, config.teacher.tokens_per_minute)
    queue: asyncio.Queue[PlannedRequest] = asyncio.Queue()
    for item in pending:
        queue.put_nowait(item)

    async def worker() -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                completion, attempts, latency = await _ask_with_retries(
                    teacher, item, config.teacher.max_retries, limiter, tally, observer
                )
            except (RetryableTeacherError, TeacherError) as exc:
                if isinstance(exc, TeacherAuthError):
                    raise
                kind = getattr(exc, "kind", type(exc).__name__)
                store.put_failed(
                    item.request.request_key, item.prompt.prompt_id, item.prompt.pack,
                    item.request.sample_index, kind, str(exc), config.teacher.max_retries + 1,
                )
                tally.failed += 1
                observer.failed(kind)
                continue
            record = _record(config, item, teacher, completion, attempts, latency, decision)
            if store.put_done(record):
                tally.answered += 1
                tally.tokens_in += record.usage.prompt_tokens
                tally.tokens_out += record.usage.completion_tokens
                observer.answered(record)

    workers = [asyncio.create_task(worker()) for _ in range(min(config.teacher.max_concurrency, len(pending)))]
    try:
        # The first auth failure (or crash) cancels every other worker at once.
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def harvest(config: DistillConfig, *, limit: int | None = None, fresh: bool = False, observer=None) -> HarvestSummary:
    """Synchronous entry point of the harvest stage."""
    return asyncio.run(harvest_async(config, limit=limit, fresh=fresh, observer=observer))
