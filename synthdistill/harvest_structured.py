"""Structured answers as they land: check each against its schema and ask again with the next unused seed.

A pack's `response_format` asks the teacher for JSON (of a schema). An answer that is not JSON
(broken off mid-object, say) or breaks the schema is asked again, up to
`harvest.structured_retries` times, each time with a seed no other sample of the prompt uses
(seed + k × samples_per_prompt). Each failure goes to the ledger with its reason
(`HarvestStore.put_schema_failure`); the request keeps its key, so a re-run finds it done. An
answer still invalid after the last re-ask is stored with `schema_error` set, and the `schema`
filter drops it. A failed attempt's tokens are paid: they are settled against the budget at once
and added to the kept answer's usage, so the ledger's spend stays true.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthdistill.records import Completion, TeacherRequest, Usage
from synthdistill.retrying import RequestFailed
from synthdistill.teachers.answer_formats import structured_problem


@dataclass
class StructuredOutcome:
    """The answer to keep, with what its re-asks took (attempts, time, tokens of the failed answers)."""

    completion: Completion
    attempts: int
    latency_ms: float
    reserved: float
    retries: int = 0
    spent: Usage | None = None


def reask_request(request: TeacherRequest, retry: int, samples_per_prompt: int) -> TeacherRequest:
    """The request asked again: the same key, the `retry`-th seed no other sample of the prompt uses."""
    seed = request.sampling.seed
    if seed is None:
        return request
    sampling = request.sampling.model_copy(update={"seed": seed + retry * samples_per_prompt})
    return request.model_copy(update={"sampling": sampling})


async def ask_until_valid(run, item, outcome: StructuredOutcome) -> StructuredOutcome:
    """Re-ask `item` while its answer is invalid and re-asks remain (and the budget allows one).

    Every invalid answer goes to the ledger with its reason; the one kept, when still invalid, says
    it again in its record's `schema_error`.
    """
    request = item.request
    spent = Usage()
    while True:
        problem = structured_problem(request.answer_format, outcome.completion.text)
        if problem is None:
            break
        run.store.put_schema_failure(
            request.request_key, outcome.retries + 1, request.sampling.seed, problem, outcome.completion.text
        )
        if outcome.retries >= run.config.harvest.structured_retries:
            break
        reserved = run.reserve(item)
        if reserved is None:  # the budget cannot pay for another try: keep this answer, invalid
            break
        request = reask_request(item.request, outcome.retries + 1, run.config.harvest.samples_per_prompt)
        try:
            completion, attempts, latency = await run.policy.ask(run.teacher, request, run.estimate(item))
        except RequestFailed:
            run.release(reserved)  # the invalid answer stands, with its own reservation
            break
        usage = outcome.completion.usage  # the invalid answer was paid for
        run.budget.settle(outcome.reserved, usage.prompt_tokens, usage.completion_tokens)
        spent.prompt_tokens += usage.prompt_tokens
        spent.completion_tokens += usage.completion_tokens
        run.tally.schema_retries += 1
        item.request_sent = request
        outcome = StructuredOutcome(
            completion, outcome.attempts + attempts, outcome.latency_ms + latency, reserved, outcome.retries + 1
        )
    outcome.spent = spent
    return outcome
