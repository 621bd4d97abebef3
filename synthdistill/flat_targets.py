"""The build's fast path for a teacher with the student's tokenizer: KD targets kept flat, in numpy.

`exact_targets` (alignment.py) gives the same targets as lists of lists, position by position;
on a scale run (128 answer tokens, top-20) making and writing those lists was most of the build.
Here the record's flat arrays (`HarvestRecord.flat_arrays`, read from Parquet) become one flat
array of candidates and one of logprobs, with the count per position, which is how the KD
dataset's Parquet columns are laid out (arrow_lists.FlatRows).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from synthdistill.alignment import AnswerTargets


@dataclass
class FlatTargets:
    """Exact-id targets kept flat (the build's fast path): per answer position `lengths[i]` candidates, in order."""

    student_ids: list[int]
    lengths: list[int]
    ids: Any  # every candidate id (numpy), position after position
    logprobs: Any
    masked: dict[str, int] = field(default_factory=dict)
    spelling: str = "exact-ids"

    @property
    def kept(self) -> int:
        return len(self.lengths) - self.lengths.count(0)


def exact_flat_targets(flat: dict[str, Any]) -> FlatTargets | None:
    """`exact_targets` on a record's flat arrays (HarvestRecord.flat_arrays), in numpy; None when its top
    lists are ragged (then the lists take the general path)."""
    import numpy as np

    token_ids, _ = flat["token_ids"]
    token_logprobs, _ = flat["token_logprobs"]
    top_ids, lengths = flat["top_ids"]
    top_logprobs, _ = flat["top_logprobs"]
    n = len(token_ids)
    if len(lengths) != n or len(token_logprobs) != n or (lengths and lengths.count(lengths[0]) != n):
        return None
    k = lengths[0] if lengths else 0
    ids = np.concatenate([top_ids.reshape(n, k).astype(np.int64), token_ids.astype(np.int64)[:, None]], axis=1)
    logprobs = np.concatenate(
        [top_logprobs.reshape(n, k).astype(np.float64), token_logprobs.astype(np.float64)[:, None]], axis=1
    )
    keep = np.ones((n, k + 1), dtype=bool)
    keep[:, k] = (ids[:, :k] != ids[:, k:]).all(axis=1)  # the sampled token beside the top-k, if not in it
    return FlatTargets(token_ids.tolist(), keep.sum(axis=1).tolist(), ids[keep], logprobs[keep])


def target_rows(targets: AnswerTargets | FlatTargets) -> tuple[list[int], Any, Any]:
    """(candidates per answer position, every candidate id, every logprob), position after position."""
    if isinstance(targets, FlatTargets):
        return targets.lengths, targets.ids, targets.logprobs
    flat_ids = list(itertools.chain.from_iterable(targets.kd_ids))
    return [len(ids) for ids in targets.kd_ids], flat_ids, list(itertools.chain.from_iterable(targets.kd_logprobs))


def logprobs_on_grid(ids: Any, logprobs: Any, lengths: list[int], sampled_ids: list[int], step: float) -> Any:
    """KD logprobs rounded to multiples of `step` nats (`datasets.kd_logprob_step`), each position's sampled
    token's own kept as it was: zstd then stores a position's top-20 in fewer bytes."""
    import numpy as np

    values = np.asarray(logprobs, dtype=np.float64)
    sampled = np.repeat(np.asarray(sampled_ids[: len(lengths)], dtype=np.int64), lengths)
    return np.where(np.asarray(ids) == sampled, values, np.round(values / step) * step)
