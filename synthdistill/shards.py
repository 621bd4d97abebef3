"""Several machines: a stable share of the harvest's requests per shard, and what makes ledgers mergeable.

    --shard i/N   (1 ≤ i ≤ N) keeps the requests whose key hashes to i - 1 modulo N

The share depends on the request key alone (a hash of teacher, messages, sampling and sample
index), never on pack order or how many prompts there are: adding prompts adds requests to
every shard without moving any request from one shard to another. `harvest_digest` names
what a harvest asks (teacher, sampling, packs), not how (endpoints, concurrency, budget), so
N machines with N base URLs harvest mergeable ledgers (merge.py refuses different digests).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from synthdistill.errors import InputError
from synthdistill.records import content_hash

if TYPE_CHECKING:
    from synthdistill.config import DistillConfig

T = TypeVar("T")
SHARD_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based, as written on the command line)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'2/3' → Shard(2, 3); anything else is an InputError (exit 2)."""
        match = SHARD_PATTERN.match(text or "")
        if not match:
            raise InputError(f"--shard must be i/N, e.g. 1/3 (got '{text}')")
        index, count = int(match[1]), int(match[2])
        if count < 1 or not 1 <= index <= count:
            raise InputError(f"--shard {text}: i must be between 1 and N (N ≥ 1), e.g. 1/{max(count, 1)}")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def has(self, request_key: str) -> bool:
        """Whether a request belongs to this shard (by its key's sha256, modulo N)."""
        digest = hashlib.sha256(request_key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def select(self, planned: Iterable[T]) -> Iterator[T]:
        """The planned requests (objects with `.request.request_key`) of this shard, in their order."""
        return (item for item in planned if self.has(item.request.request_key))  # type: ignore[attr-defined]


def as_shard(value: Shard | str | None) -> Shard | None:
    """A Shard from the API's `shard=` (a Shard, 'i/N' or None)."""
    if value is None or isinstance(value, Shard):
        return value
    return Shard.parse(value)


def harvest_digest(config: DistillConfig) -> str:
    """What a harvest asks for (teacher model, endpoint kind, sampling, samples, packs): equal for every shard."""
    teacher, harvest = config.teacher, config.harvest
    sampling = harvest.sampling(None, teacher.chat_template_kwargs)
    return content_hash(
        {
            "model": teacher.model,
            "endpoint": teacher.endpoint,
            "sampling": sampling.model_dump(mode="json"),
            "samples_per_prompt": harvest.samples_per_prompt,
            "packs": list(harvest.packs),
        },
        length=16,
    )
