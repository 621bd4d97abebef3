"""Scoring is a harvest: the teacher scores the student's samples through the harvester's machinery.

    refuse teachers that cannot score (exit 2) → the gate decides the use again (a refusal sends
    nothing) → skip what the scores ledger holds → `teacher.max_concurrency` workers, each:
    reserve budget → wait for the rate limiter → ask with retries → commit the score or the failure.

The workers, limiter, failure brake, stall watch and tallies are `harvest.HarvestRun`'s; only
what one worker does with a sample differs. Every score is committed as it lands, so `kill -9`
loses at most the requests in flight and a re-run scores only what the ledger lacks. Scores
count against `harvest.budget_usd` with the harvest's answers (the teacher's spend on the run).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from synthdistill.api_keys import read_api_key
from synthdistill.async_bridge import outside_running_loop as _outside_running_loop
from synthdistill.config import DistillConfig
from synthdistill.errors import AnsweringModelRefused, ConfigError, StageError
from synthdistill.harvest import HarvestRun, _Silent, teacher_price
from synthdistill.harvest_plan import PendingQueue
from synthdistill.policy import gate
from synthdistill.pricing import Budget, check_budget_priced, prompt_tokens_upper_bound
from synthdistill.records import utc_now
from synthdistill.retrying import RequestFailed
from synthdistill.scoring.http import HTTPScorer
from synthdistill.scoring.local import local_scorer
from synthdistill.scoring.records import SampleToScore, ScoreAnswer, ScoredSample, ScoreRequest, ScoringSummary
from synthdistill.scoring.store import ScoreStore
from synthdistill.store import HarvestStore

# hosts whose chat APIs return no prompt logprobs
NO_PROMPT_LOGPROBS_HOSTS = ("api.openai.com", "api.anthropic.com")


class ScoringIncomplete(StageError):
    """Some samples were not scored (failed, or the budget stopped); the scored ones are in the ledger."""

    def __init__(self, message: str, *, summary: dict):
        super().__init__(message)
        self.summary = summary


@dataclass
class ScoringResult:
    scored: list[ScoredSample]  # one per sample given, in order
    summary: ScoringSummary


def requested_top_k(config: DistillConfig) -> int:
    """Alternatives asked per position: `student.on_policy.scoring_top_k`, else `harvest.top_logprobs` (≥ 1)."""
    on_policy = getattr(config.student, "on_policy", None) if config.student is not None else None
    return max(1, getattr(on_policy, "scoring_top_k", None) or config.harvest.top_logprobs or 20)


def check_scorable(config: DistillConfig) -> None:
    """Refuse, before anything is sent, a teacher whose API cannot return the logprobs of given text."""
    teacher = config.teacher
    why = None
    if teacher.backend == "openai-batch":
        why = "the openai-batch backend (OpenAI's Batch API) returns no prompt logprobs"
    else:
        from synthdistill.teachers.openai_http import endpoint_host

        hosts = [endpoint_host(url).split(":")[0] for url in teacher.base_urls] if teacher.backend == "openai" else []
        closed = [h for h in hosts if h in NO_PROMPT_LOGPROBS_HOSTS]
        if closed:
            why = f"the chat API at {closed[0]} returns no prompt logprobs (it cannot score given text)"
    if why:
        raise ConfigError(
            f"on-policy scoring needs a teacher that returns the logprobs of given text: {why}; use a vLLM server "
            "(prompt_logprobs), a completions API with `echo` + `logprobs` (Together and others), or the "
            "in-process transformers teacher",
            file=config.path,
        )


def make_scorer(config: DistillConfig, api_key: str | None):
    """The scorer for the configured teacher: in-process, or over its API."""
    if config.teacher.backend == "transformers":
        return local_scorer(config.teacher, config.project_dir)
    return HTTPScorer(config, api_key)


class ScoringRun(HarvestRun):
    """A harvest run whose work items are samples to score (`store` is the scores ledger)."""

    def __init__(self, config, store: ScoreStore, decision, budget: Budget, observer, failed_before, top_k: int):
        super().__init__(config, store, decision, budget, observer, failed_before)
        self.top_k = top_k
        self.prompt_tokens = 0

    async def _worker(self, queue: PendingQueue) -> None:
        while queue and not self.budget.exhausted:
            sample = queue.take()
            if sample is None:
                return
            reserved = self.budget.reserve(prompt_tokens_upper_bound(sample.conversation()), 1)
            if reserved is None:
                queue.put_back(sample)  # left for a later run with more budget
                return
            key = sample.score_key
            self.retried_failures += key in self.failed_before
            estimate = sum(len(m.content) for m in sample.conversation()) // 4 + 1
            try:
                answer, attempts, latency = await self.policy.ask(
                    self.teacher, ScoreRequest(key, sample, self.top_k), estimate
                )
            except RequestFailed as exc:
                self.budget.release(reserved)
                self.tally.error(exc.kind)
                self.store.put_failed(
                    key, sample.checkpoint, sample.prompt_id, sample.sample_index, exc.kind, exc.message, exc.attempts
                )
                self.tally.failed += 1
                self.observer.failed(exc.kind)
                continue
            except BaseException:
                self.budget.release(reserved)
                raise
            self.store_score(sample, answer, attempts, latency, reserved)

    def store_score(self, sample: SampleToScore, answer: ScoreAnswer, attempts: int, latency: float, reserved: float):
        try:
            self.answering.check(answer.model)  # a server answering as another model: the gate decides on it
        except AnsweringModelRefused:
            self.budget.release(reserved)
            raise
        usage = answer.usage
        if not usage.prompt_tokens:  # a server that counts nothing: the tokens it read cover at least the answer
            usage = usage.model_copy(update={"prompt_tokens": len(answer.logprobs.tokens)})
        scored = ScoredSample(
            score_key=sample.score_key,
            checkpoint=sample.checkpoint,
            prompt_id=sample.prompt_id,
            sample_index=sample.sample_index,
            text=sample.text,
            logprobs=answer.logprobs,
            model_answered=answer.model,
            endpoint=answer.endpoint,
            prompt_tokens_scored=usage.prompt_tokens,
            attempts=attempts,
            style=self.teacher.style,
            ended=sample.ended,
            usage=usage,
            latency_ms=round(latency, 2),
            scored_at=utc_now(),
        )
        cost = self.budget.settle(reserved, usage.prompt_tokens, usage.completion_tokens)
        self.watch.answered()
        if self.store.put_done(scored):
            self.tally.answered += 1
            self.tally.tokens_in += usage.prompt_tokens
            self.tally.tokens_out += usage.completion_tokens
            self.observer.answered(scored)
            spent = getattr(self.observer, "spent", None)
            if spent is not None and self.budget.cost_usd is not None:
                spent(cost)


def _spent_before(config: DistillConfig, store: ScoreStore, price) -> float:
    """What the teacher has cost the run so far: the harvest's answers and the scores already stored."""
    if price is None:
        return 0.0
    spent = price.cost(*store.usage_totals())
    if config.layout.ledger.exists():
        with HarvestStore(config.layout.ledger) as harvest:
            spent += price.cost(*harvest.usage_totals())
    return spent


async def score_async(config: DistillConfig, samples: list[SampleToScore], *, observer=None) -> ScoringResult:
    """Score `samples` (the ledger's scores are returned without sending); raises ScoringIncomplete on gaps."""
    observer = observer or _Silent()
    started = time.perf_counter()
    check_scorable(config)
    decision = gate(config)  # the use is decided again: a refusal (exit 3) sends nothing
    top_k = requested_top_k(config)
    unique = list({s.score_key: s for s in samples}.values())
    api_key = read_api_key(config)
    price = teacher_price(config)
    check_budget_priced(price, config.harvest.budget_usd, config.teacher.model, config.path)
    with ScoreStore(config.layout.scores) as store:
        stored = store.scored([s.score_key for s in unique])
        pending = [s for s in unique if s.score_key not in stored]
        observer.planned(len(unique), len(unique) - len(pending))
        budget = Budget(price, config.harvest.budget_usd, _spent_before(config, store, price))
        run_id = store.start_run()
        failed_before = {f["score_key"] for f in store.failures()}
        run = ScoringRun(config, store, decision, budget, observer, failed_before, top_k)
        scorer = None
        if pending:
            scorer = make_scorer(config, api_key)
            try:
                await run.run(scorer, PendingQueue(iter(pending), len(pending)))
            finally:
                await scorer.aclose()
        stored = store.scored([s.score_key for s in unique])
        tally = run.tally
        summary = ScoringSummary(
            samples=len(unique),
            already_scored=len(unique) - len(pending),
            scored=tally.answered,
            failed=tally.failed,
            requests_sent=tally.requests_sent,
            prompt_tokens_scored=tally.tokens_in,
            cost_usd=budget.cost_usd,
            budget_usd=config.harvest.budget_usd,
            stopped="budget" if budget.exhausted else None,
            not_sent=run.not_sent,
            seconds=round(time.perf_counter() - started, 3),
            errors_by_kind=tally.errors_by_kind,
            style=getattr(scorer, "style", None),
            endpoint=", ".join(config.teacher.base_urls) or None,
            policy_id=decision.policy_id,
            decision=decision.outcome,
            ledger=str(config.layout.scores),
        )
        store.finish_run(run_id, summary.model_dump())
    missing = [s for s in unique if s.score_key not in stored]
    if missing:
        raise ScoringIncomplete(_incomplete_message(summary, len(missing)), summary=summary.model_dump())
    return ScoringResult([stored[s.score_key] for s in samples], summary)


def _incomplete_message(summary: ScoringSummary, missing: int) -> str:
    why = []
    if summary.stopped == "budget":
        why.append(f"harvest.budget_usd ({summary.budget_usd}) was reached")
    if summary.errors_by_kind:
        why.append("errors: " + ", ".join(f"{k} ×{n}" for k, n in sorted(summary.errors_by_kind.items())))
    return (
        f"{missing} of {summary.samples} samples could not be scored by the teacher ({'; '.join(why) or 'failed'}); "
        f"the {summary.samples - missing} scored are kept in {summary.ledger}, and a re-run scores only the rest"
    )


async def score_samples_async(
    config: DistillConfig, samples: list[SampleToScore], *, observer=None
) -> list[ScoredSample]:
    """The teacher's scores of `samples`, one per sample in order (see `score_async`)."""
    return (await score_async(config, samples, observer=observer)).scored


def score_samples(config: DistillConfig, samples: list[SampleToScore], *, observer=None) -> list[ScoredSample]:
    """Synchronous `score_samples_async`; inside a running event loop it runs in a worker thread."""
    return _outside_running_loop(lambda: asyncio.run(score_samples_async(config, samples, observer=observer)))
