"""The requests a harvest plans, streamed: a pass that checks and counts them, then the pending ones again.

A run of a million prompts never holds them: `RequestPlan.make` renders every prompt once (a broken
pack row or a pack the teacher cannot answer fails there, before a single request is sent), plans
its samples (`planned_requests`), keeps this shard's and asks the ledger, a chunk at a time, which it
already answered. It keeps 8 bytes per pending request: the first 64 bits of its key. The senders
then take the pending requests from `RequestPlan.pending()`, which walks the packs again.

`plan` (the command) makes the same pass with a `visit` callback that adds up sizes and costs.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from synthdistill.packs import configured_prompt_stream
from synthdistill.records import Prompt, TeacherRequest, request_key_for
from synthdistill.teachers.answer_formats import check_supported

if TYPE_CHECKING:
    from synthdistill.config import DistillConfig
    from synthdistill.shards import Shard

CHUNK = 512  # requests looked up in the ledger at once (an SQL IN list)


@dataclass
class PlannedRequest:
    prompt: Prompt
    request: TeacherRequest
    request_sent: TeacherRequest | None = None  # a structured answer's re-ask (another seed, the same key)


def planned_requests(config: DistillConfig, prompts: Iterable[Prompt]) -> Iterator[PlannedRequest]:
    """One request per (prompt, sample); each sample gets its own seed so samples differ."""
    for prompt in prompts:
        for sample_index in range(config.harvest.samples_per_prompt):
            sampling = config.harvest.sampling(prompt.sampling_overrides, config.teacher.chat_template_kwargs)
            if sampling.seed is not None:
                sampling = sampling.model_copy(update={"seed": sampling.seed + sample_index})
            key = request_key_for(config.teacher.model, prompt.messages, sampling, sample_index, prompt.answer_format)
            request = TeacherRequest(
                request_key=key,
                messages=prompt.messages,
                sampling=sampling,
                sample_index=sample_index,
                answer_format=prompt.answer_format,
            )
            yield PlannedRequest(prompt, request)


def plan_requests(config: DistillConfig, prompts: list[Prompt]) -> list[PlannedRequest]:
    """`planned_requests` as a list (small plans: tests and benchmarks)."""
    return list(planned_requests(config, prompts))


def key_number(request_key: str) -> int:
    """The first 64 bits of a request key (32 hex digits: `records.request_key_for`)."""
    return int(request_key[:16], 16)


@dataclass
class RequestPlan:
    """What one pass over the configured packs found: counts, and the pending requests' key numbers."""

    config: DistillConfig
    limit: int | None
    shard: Shard | None
    prompts: int
    requests: int  # planned (this shard's share)
    held: int  # of those, answered in the ledger already
    pending_numbers: object  # sorted numpy uint64 array: `key_number` of each pending request

    @classmethod
    def make(
        cls,
        config: DistillConfig,
        *,
        limit: int | None = None,
        shard: Shard | None = None,
        done_among: Callable[[list[str]], set[str]] | None = None,
        visit: Callable[[PlannedRequest, bool], None] | None = None,
    ) -> RequestPlan:
        """Render, check and plan every prompt; `done_among(keys)` names the keys the ledger answered.

        `visit(item, done)` sees each planned request of the shard (the plan command's sums).
        PackError / ConfigError are raised here, before anything is sent.
        """
        import numpy as np  # not at import: harvest is on the CLI's paths

        pending = array("Q")
        counts = {"prompts": 0, "requests": 0, "held": 0}
        chunk: list[PlannedRequest] = []

        def settle() -> None:
            done = done_among([item.request.request_key for item in chunk]) if done_among else set()
            for item in chunk:
                held = item.request.request_key in done
                counts["held"] += held
                if not held:
                    pending.append(key_number(item.request.request_key))
                if visit is not None:
                    visit(item, held)
            chunk.clear()

        for prompt in configured_prompt_stream(config, limit):
            counts["prompts"] += 1
            check_supported([prompt], config.teacher.backend, config.teacher.endpoint, config.path)
            for item in planned_requests(config, [prompt]):
                if shard is not None and not shard.has(item.request.request_key):
                    continue
                counts["requests"] += 1
                chunk.append(item)
                if len(chunk) >= CHUNK:
                    settle()
        settle()
        numbers = np.frombuffer(pending, dtype=np.uint64) if len(pending) else np.empty(0, np.uint64)
        return cls(config, limit, shard, pending_numbers=np.sort(numbers), **counts)

    @property
    def to_send(self) -> int:
        return self.requests - self.held

    def pending(self) -> Iterator[PlannedRequest]:
        """The pending requests in plan order, rendered again (a request answered since is still given)."""
        import numpy as np

        numbers = self.pending_numbers
        if not len(numbers):
            return
        prompts = configured_prompt_stream(self.config, self.limit)
        for item in planned_requests(self.config, prompts):
            key = item.request.request_key
            if self.shard is not None and not self.shard.has(key):
                continue
            wanted = np.uint64(key_number(key))  # a numpy scalar: a Python int would compare as float64
            at = int(np.searchsorted(numbers, wanted))
            if at < len(numbers) and numbers[at] == wanted:
                yield item


class PendingQueue:
    """The senders' queue over `RequestPlan.pending()` (or any work items: samples to score): taken one at a time,
    an item not sent put back. `count` (how many the iterator gives) sizes it for reports; the queue ends
    when the iterator does."""

    def __init__(self, items: Iterator, count: int):
        self._items, self._left, self._back, self._ended = items, count, [], False

    def __len__(self) -> int:
        """How many are left, as far as the plan counted them."""
        return 0 if self._ended and not self._back else max(self._left, len(self._back))

    def __bool__(self) -> bool:
        return bool(self._back) or not self._ended

    def take(self):
        """The next item, or None when none is left."""
        if self._back:
            self._left -= 1
            return self._back.pop()
        item = next(self._items, None) if not self._ended else None
        if item is None:
            self._ended, self._left = True, 0
            return None
        self._left = max(0, self._left - 1)
        return item

    def put_back(self, item) -> None:
        self._back.append(item)
        self._left += 1
