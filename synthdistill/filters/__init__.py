"""The filter pipeline: ordered steps, each a pure function over records.

A filter is `fn(records, params) -> list[reason | None]`: one verdict per record,
None to keep it, a short reason string to drop it. The pipeline counts kept/dropped
per step and keeps every dropped record with its filter and reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from synthdistill.filters.dedup import DedupParams, dedup
from synthdistill.filters.finished import FinishedParams, finished
from synthdistill.records import DroppedRecord, HarvestRecord

FilterFunction = Callable[[list[HarvestRecord], Any], list[str | None]]


@dataclass(frozen=True)
class RegisteredFilter:
    params: type[BaseModel]
    function: FilterFunction


FILTERS: dict[str, RegisteredFilter] = {
    "finished": RegisteredFilter(FinishedParams, finished),
    "dedup": RegisteredFilter(DedupParams, dedup),
}


def parse_filter_spec(item: Any):
    """Validate one entry of `filters:` (a name, or {name: params}) into a FilterSpec."""
    from synthdistill.config import FilterSpec

    if isinstance(item, str):
        name, params = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        name, params = next(iter(item.items()))
        params = params or {}
    else:
        raise ValueError("each filter is a name or a one-key mapping {name: {params}}")
    if name not in FILTERS:
        import difflib

        close = difflib.get_close_matches(str(name), FILTERS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known filters: {', '.join(FILTERS)}"
        raise ValueError(f"unknown filter '{name}'{hint}")
    if not isinstance(params, dict):
        raise ValueError(f"params of filter '{name}' must be a mapping")
    try:
        validated = FILTERS[name].params.model_validate(params)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"filter '{name}': {where}: {err['msg']}") from None
    return FilterSpec(name=name, params=validated.model_dump())


@dataclass
class StepReport:
    name: str
    params: dict[str, Any]
    input: int
    kept: int
    dropped: int
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class FilterResult:
    kept: list[HarvestRecord]
    dropped: list[DroppedRecord]
    steps: list[StepReport]


def run_filters(records: list[HarvestRecord], specs: list) -> FilterResult:
    """Apply the filter steps in order; each sees only what the steps before it kept."""
    kept = list(records)
    dropped: list[DroppedRecord] = []
    steps: list[StepReport] = []
    for spec in specs:
        registered = FILTERS[spec.name]
        params = registered.params.model_validate(spec.params)
        verdicts = registered.function(kept, params)
        if len(verdicts) != len(kept):
            raise RuntimeError(f"filter {spec.name} returned {len(verdicts)} verdicts for {len(kept)} records")
        survivors: list[HarvestRecord] = []
        reasons: dict[str, int] = {}
        for record, reason in zip(kept, verdicts):
            if reason is None:
                survivors.append(record)
            else:
                reasons[reason] = reasons.get(reason, 0) + 1
                dropped.append(DroppedRecord(filter=spec.name, reason=reason, record=record))
        steps.append(StepReport(spec.name, spec.params, len(kept), len(survivors), len(kept) - len(survivors), reasons))
        kept = survivors
    return FilterResult(kept=kept, dropped=dropped, steps=steps)
