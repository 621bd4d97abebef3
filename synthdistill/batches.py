"""Work on batches in order, in this process or in forked workers, holding a bounded number at once.

`ordered_map(function, tasks, workers)` gives `function(task)` for each task, in task order,
whatever the number of workers: the filter and build stages' output does not depend on it.
Workers are forked, so `function` (a closure over prepared state: steps, a tokenizer) is
inherited, never pickled; tasks and results are. At most two tasks per worker are in flight.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_FUNCTION: Callable[[Any], Any] | None = None  # inherited by forked workers


def _call(task: Any) -> Any:
    return _FUNCTION(task)


def ordered_map(function: Callable[[Any], Any], tasks: Iterable, workers: int = 1) -> Iterator[Any]:
    """`function(task)` for each task, in order; with `workers` > 1 in that many forked processes."""
    if workers <= 1:
        yield from map(function, tasks)
        return
    global _FUNCTION
    _FUNCTION = function
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.apply_async(_call, (task,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
