"""Requests-per-minute and tokens-per-minute buckets that the harvester waits on."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """A bucket of `capacity` units refilled at `per_minute / 60` units a second."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        # Allow a burst of one second's worth (at least one unit) so a fresh run starts at once.
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def take(self, amount: float = 1.0) -> None:
        """Wait until `amount` units are available, then spend them (amount may exceed capacity)."""
        async with self._lock:
            self._refill()
            if self.level < amount:
                await asyncio.sleep((amount - self.level) / self.rate)
                self._refill()
            self.level -= amount


class RateLimiter:
    """Both buckets of a teacher; a limit of None is unlimited."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.requests = TokenBucket(requests_per_minute) if requests_per_minute else None
        self.tokens = TokenBucket(tokens_per_minute) if tokens_per_minute else None

    async def acquire(self, estimated_tokens: int) -> None:
        if self.requests:
            await self.requests.take(1)
        if self.tokens:
            await self.tokens.take(estimated_tokens)
