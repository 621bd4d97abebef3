"""When to stop waiting for a teacher that has stopped answering.

A server that answers every request with 429, or never answers at all, would keep a
harvest "running" for an hour with nothing to show. `StallWatch` ends it: no answer
for `harvest.give_up_after_s`, or failure pauses of every sender adding up to
`harvest.max_pause_s`, raise `TeacherStuck` (exit 1). Answers are committed as they
land, so everything answered so far stays in the ledger and a re-run resumes.

Only the failure brake's pauses count towards `max_pause_s` (they stop every sender at
once, one after the other); a Retry-After is paused by each sender that got it, and
those overlapping waits would count many times over.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from synthdistill.errors import TeacherStuck


def describe_errors(errors_by_kind: dict[str, int]) -> str:
    """ "429 ×57, timeout ×3", or what it means that there were none."""
    if not errors_by_kind:
        return "no answer and no error (every request was still waiting)"
    return "only errors: " + ", ".join(
        f"{kind} ×{n}" for kind, n in sorted(errors_by_kind.items(), key=lambda kv: -kv[1])
    )


class StallWatch:
    """Tracks the last answer and the pause time; `check` says why to give up, if it is time."""

    def __init__(
        self, give_up_after_s: float | None, max_pause_s: float | None, clock: Callable[[], float] = time.monotonic
    ):
        self.give_up_after_s = give_up_after_s
        self.max_pause_s = max_pause_s
        self.clock = clock
        self.last_answer = clock()
        self.paused_s = 0.0

    def answered(self) -> None:
        self.last_answer = self.clock()

    def paused(self, seconds: float) -> None:
        self.paused_s += seconds

    def check(self, errors_by_kind: dict[str, int], answered: int, host: str) -> None:
        """Raise TeacherStuck when the teacher has been silent or paused too long."""
        silent_s = self.clock() - self.last_answer
        if self.give_up_after_s is not None and silent_s >= self.give_up_after_s:
            why = f"gave no answer for {silent_s:.0f} s (harvest.give_up_after_s = {self.give_up_after_s:g})"
        elif self.max_pause_s is not None and self.paused_s >= self.max_pause_s:
            why = (
                f"kept failing until every sender had paused {self.paused_s:.0f} s in all "
                f"(harvest.max_pause_s = {self.max_pause_s:g})"
            )
        else:
            return
        raise TeacherStuck(
            f"stopped waiting: the teacher at {host} {why}; it sent {describe_errors(errors_by_kind)}. "
            f"The {answered} answers of this run are kept in the ledger; run `synthdistill harvest` again to resume"
        )
