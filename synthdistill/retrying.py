"""Retry policy of the harvester: backoff with jitter, Retry-After, and a brake on failure storms.

Teachers make one attempt per call and classify faults; this module decides whether,
when and how often to try again:

- each request retries up to `max_retries` times, waiting exponential backoff with
  full jitter, never less than the server's Retry-After;
- a Retry-After pauses every sender (through the shared `RateLimiter`), because the
  server's limit is shared too;
- when the server keeps failing (`FailureBrake.threshold` retryable faults in a row,
  across all requests), every sender pauses, for a time that doubles while the
  failures go on, instead of each retrying on its own into a storm.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from synthdistill.errors import RetryableTeacherError, TeacherAuthError, TeacherError
from synthdistill.rate_limit import RateLimiter
from synthdistill.records import Completion, TeacherRequest

MAX_BACKOFF_S = 60.0
BRAKE_THRESHOLD = 8
BRAKE_FIRST_PAUSE_S = 1.0
BRAKE_MAX_PAUSE_S = 60.0


def backoff_seconds(
    attempt: int,
    retry_after: float | None,
    rng: random.Random | None = None,
    base_s: float = 0.5,
    max_s: float = MAX_BACKOFF_S,
) -> float:
    """Wait after failed attempt number `attempt` (1-based): full jitter over base·2^(attempt-1), capped, ≥ Retry-After."""
    exponential = min(max_s, base_s * (2 ** (attempt - 1)))
    wait = (rng or random).uniform(0, exponential)
    return max(wait, retry_after or 0.0)


class FailureBrake:
    """Counts retryable faults in a row across all requests; past `threshold`, says how long to pause everyone."""

    def __init__(
        self,
        threshold: int = BRAKE_THRESHOLD,
        first_pause_s: float = BRAKE_FIRST_PAUSE_S,
        max_pause_s: float = BRAKE_MAX_PAUSE_S,
    ):
        self.threshold = threshold
        self.first_pause_s = first_pause_s
        self.max_pause_s = max_pause_s
        self.in_a_row = 0
        self.pauses = 0
        self._next_pause_s = first_pause_s

    def success(self) -> None:
        self.in_a_row = 0
        self._next_pause_s = self.first_pause_s

    def failure(self) -> float | None:
        """Record a fault; the pause (seconds) every sender must take now, or None."""
        self.in_a_row += 1
        if self.in_a_row < self.threshold:
            return None
        self.in_a_row = 0
        self.pauses += 1
        pause, self._next_pause_s = self._next_pause_s, min(self.max_pause_s, 2 * self._next_pause_s)
        return pause


class RequestFailed(Exception):
    """A request given up: its retries ran out, or the teacher rejected it for good (kind "rejected")."""

    def __init__(self, kind: str, message: str, attempts: int):
        self.kind = kind
        self.message = message
        self.attempts = attempts
        super().__init__(message)


@dataclass
class RetryPolicy:
    """How one request is tried: the shared limiter and brake, the retry budget and the backoff."""

    limiter: RateLimiter
    brake: FailureBrake
    max_retries: int
    base_backoff_s: float = 0.5
    rng: random.Random | None = None
    on_send: Callable[[], None] = lambda: None
    on_retry: Callable[[RetryableTeacherError], None] = lambda exc: None
    on_pause: Callable[[float, str], None] = lambda seconds, reason: None

    async def ask(self, teacher, request: TeacherRequest, estimated_tokens: int) -> tuple[Completion, int, float]:
        """(completion, attempts, latency_ms of the answering attempt); raises RequestFailed.

        A rejection that retrying cannot fix (a 4xx) fails the request at once; TeacherAuthError
        (401/403) passes through, to stop the whole run.
        """
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.acquire(estimated_tokens)
            self.on_send()
            started = time.perf_counter()
            try:
                completion = await teacher.complete(request)
            except TeacherAuthError:
                raise
            except TeacherError as exc:
                raise RequestFailed("rejected", str(exc), attempt) from None
            except RetryableTeacherError as exc:
                self._after_fault(exc)
                if attempt > self.max_retries:
                    raise RequestFailed(exc.kind, str(exc), attempt) from None
                self.on_retry(exc)
                await asyncio.sleep(backoff_seconds(attempt, exc.retry_after, self.rng, self.base_backoff_s))
                continue
            self.brake.success()
            return completion, attempt, (time.perf_counter() - started) * 1000.0

    def _after_fault(self, exc: RetryableTeacherError) -> None:
        if exc.retry_after:
            self.limiter.pause_for(exc.retry_after)
        pause = self.brake.failure()
        if pause is not None:
            self.limiter.pause_for(pause)
            self.on_pause(pause, f"{self.brake.threshold} faults in a row")


async def until_first_failure(workers: list[asyncio.Task]) -> None:
    """Wait for every worker; the first one that raises (an auth failure, a stuck teacher, a crash) cancels the
    others at once and its exception is raised. The workers are always cancelled and awaited on the way out."""
    try:
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
