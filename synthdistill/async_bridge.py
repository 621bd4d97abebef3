"""Run blocking work that may call `asyncio.run` from any caller, even one inside a running event loop.

Shared by the project API (project.py) and teacher scoring (scoring/): neither imports the other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def outside_running_loop(work: Callable[[], T]) -> T:
    """`work()` here, or in a worker thread when this thread runs an event loop (asyncio.run would refuse)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthdistill") as pool:
        return pool.submit(work).result()
