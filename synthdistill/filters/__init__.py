"""The filter pipeline: ordered steps, each a pure function over records.

A filter is `fn(records, params) -> list[reason | None]`: one verdict per record,
None to keep it, a reason string to drop it. A reason is `category` or
`category: detail` ("refusal: matched 'as an AI'"); the funnel counts categories,
`dropped.jsonl` keeps the whole reason. A filter that changes the records it keeps
(`pii` with `action: redact`) returns a `FilterOutcome(verdicts, records, notes)`
instead: `records[i]` replaces the i-th input, `notes[i]` says why it was changed.

Filters that need files (`verify` reads the packs' verifiers, `decontaminate` the
held-out sets) do no I/O themselves: their `prepare(params, context)` hook loads
what they need into the params, and the filter stage (`filter_stage.py`) calls it. `run_filters` is
pure: records in, kept + dropped records and a per-step report out.

Your own filter: name it by import path in distill.yaml,

    filters:
      - finished
      - mypkg.quality:short_answers          # no params
      - mypkg.quality:min_words: {words: 5}  # params

`mypkg.quality` must be importable (installed, or on PYTHONPATH). The function is
called as `fn(records, params)` and returns verdicts or a `FilterOutcome`; `params`
is the mapping as written, or, when the function has a `Params` attribute (a pydantic
model), that model validated from it (so bad params are config errors).
"""

from __future__ import annotations

import difflib
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from synthdistill.filters.confidence import ConfidenceParams, confidence
from synthdistill.filters.decontaminate import DecontaminateParams, decontaminate, load_references
from synthdistill.filters.dedup import Deduplicator, DedupParams, dedup, fingerprints
from synthdistill.filters.finished import FinishedParams, finished
from synthdistill.filters.length import LengthParams, length
from synthdistill.filters.outcome import FilterFunction, FilterOutcome, FilterSpec
from synthdistill.filters.pii import PiiParams, pii
from synthdistill.filters.refusal import RefusalParams, refusal
from synthdistill.filters.repetition import RepetitionParams, repetition
from synthdistill.filters.select import SelectParams, load_select_verifiers, select
from synthdistill.filters.verify import VerifyParams, load_verifiers, verify
from synthdistill.packs import PackInfo
from synthdistill.records import DroppedRecord, HarvestRecord


@dataclass(frozen=True)
class FilterContext:
    """What `prepare` hooks may read: the project folder and the config's packs (`packs.PackInfo`: no prompts)."""

    project_dir: Path
    config_path: Path
    packs: list[PackInfo] = field(default_factory=list)


@dataclass(frozen=True)
class RegisteredFilter:
    params: type[BaseModel] | None  # None: a plug-in without a Params model gets the raw mapping
    function: FilterFunction
    prepare: Callable[[Any, FilterContext], Any] | None = None  # file reads, run by the stage
    # How the filter stage may stream it: "record" (each verdict depends on its record alone: any batch,
    # any process), "stream" (`stream(params)` is a callable fed batch after batch in order, keeping what
    # it must), or "whole" (it sees every record at once: `select`, and plug-ins).
    mode: str = "whole"
    stream: Callable[[Any], FilterFunction] | None = None
    # A stream's per-record work, done where the per-record steps run (in the workers):
    # `stream_inputs(records, params)` → what the stream is then called with beside the records.
    stream_inputs: Callable[[list[HarvestRecord], Any], Any] | None = None
    # Whether it reads the token arrays (tokens, ids, logprobs). When no step does, the filter stage
    # leaves them flat numpy arrays (HarvestRecord.flat_arrays). Plug-ins: True.
    reads_arrays: bool = True


FILTERS: dict[str, RegisteredFilter] = {
    "finished": RegisteredFilter(FinishedParams, finished, mode="record", reads_arrays=False),
    "refusal": RegisteredFilter(RefusalParams, refusal, mode="record", reads_arrays=False),
    "length": RegisteredFilter(LengthParams, length, mode="record"),
    "repetition": RegisteredFilter(RepetitionParams, repetition, mode="record", reads_arrays=False),
    "dedup": RegisteredFilter(
        DedupParams, dedup, mode="stream", stream=Deduplicator, stream_inputs=fingerprints, reads_arrays=False
    ),
    "confidence": RegisteredFilter(ConfidenceParams, confidence, mode="record"),
    "verify": RegisteredFilter(VerifyParams, verify, prepare=load_verifiers, mode="record", reads_arrays=False),
    "decontaminate": RegisteredFilter(
        DecontaminateParams, decontaminate, prepare=load_references, mode="record", reads_arrays=False
    ),
    "pii": RegisteredFilter(PiiParams, pii, mode="record", reads_arrays=False),
    "select": RegisteredFilter(SelectParams, select, prepare=load_select_verifiers),
}


def reason_category(reason: str) -> str:
    """The part of a drop reason the funnel counts: before the first ': '."""
    return reason.split(": ", 1)[0]


def resolve_filter(name: str) -> RegisteredFilter:
    """A built-in filter by name, or a plug-in by `module:function`; ValueError says what is wrong."""
    if name in FILTERS:
        return FILTERS[name]
    if ":" not in name:
        close = difflib.get_close_matches(str(name), FILTERS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known filters: {', '.join(FILTERS)}"
        raise ValueError(f"unknown filter '{name}'{hint} (a plug-in is named 'module:function')")
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure importing user code is a config problem
        raise ValueError(f"filter '{name}': cannot import '{module_name}': {type(exc).__name__}: {exc}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"filter '{name}': '{module_name}' has no function '{attribute}'")
    params_model = getattr(function, "Params", None)
    if not (isinstance(params_model, type) and issubclass(params_model, BaseModel)):
        params_model = None
    return RegisteredFilter(params_model, function)


def validate_params(name: str, registered: RegisteredFilter, params: Any) -> Any:
    """The params model of a step (or the raw mapping for a plug-in without one)."""
    if not isinstance(params, dict):
        raise ValueError(f"params of filter '{name}' must be a mapping")
    if registered.params is None:
        return dict(params)
    try:
        return registered.params.model_validate(params)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        known = ", ".join(registered.params.model_fields) or "none"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(where, list(registered.params.model_fields), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known params: {known}"
            raise ValueError(f"filter '{name}': unknown param '{where}'; {hint}") from None
        raise ValueError(f"filter '{name}': {where}: {err['msg'].removeprefix('Value error, ')}") from None


def parse_filter_spec(item: Any):
    """Validate one entry of `filters:` (a name, or {name: params}) into a FilterSpec."""
    if isinstance(item, str):
        name, params = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        name, params = next(iter(item.items()))
        params = {} if params is None else params
    else:
        raise ValueError("each filter is a name or a one-key mapping {name: {params}}")
    name = str(name)
    validated = validate_params(name, resolve_filter(name), params)
    dumped = validated.model_dump() if isinstance(validated, BaseModel) else validated
    return FilterSpec(name=name, params=dumped)


@dataclass(frozen=True)
class FilterStep:
    """A resolved step: its function and validated (and, where needed, prepared) params."""

    name: str
    params: Any
    function: FilterFunction
    config_params: dict[str, Any]
    mode: str = "whole"  # RegisteredFilter.mode
    stream: Callable[[Any], FilterFunction] | None = None
    reads_arrays: bool = True  # RegisteredFilter.reads_arrays
    stream_inputs: Callable[[list[HarvestRecord], Any], Any] | None = None  # RegisteredFilter.stream_inputs


def resolve_step(spec, context: FilterContext | None = None) -> FilterStep:
    """A FilterSpec → FilterStep; with a context, run the filter's `prepare` hook (reads files)."""
    registered = resolve_filter(spec.name)
    params = validate_params(spec.name, registered, spec.params)
    if context is not None and registered.prepare is not None:
        params = registered.prepare(params, context)
    return FilterStep(
        spec.name,
        params,
        registered.function,
        dict(spec.params),
        registered.mode,
        registered.stream,
        registered.reads_arrays,
        registered.stream_inputs,
    )


@dataclass
class StepReport:
    name: str
    params: dict[str, Any]
    input: int
    kept: int
    dropped: int
    reasons: dict[str, int] = field(default_factory=dict)  # drop reason category → count
    modified: int = 0  # kept records the step changed (e.g. redacted)
    modified_reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ModifiedRecord:
    filter: str
    note: str
    request_key: str


@dataclass
class FilterResult:
    kept: list[HarvestRecord]
    dropped: list[DroppedRecord]
    steps: list[StepReport]
    modified: list[ModifiedRecord] = field(default_factory=list)


def run_filters(records: list[HarvestRecord], specs: list) -> FilterResult:
    """Apply the steps (FilterSpecs or prepared FilterSteps) in order; each sees what the ones before kept."""
    steps = [spec if isinstance(spec, FilterStep) else resolve_step(spec) for spec in specs]
    result = FilterResult(kept=[], dropped=[], steps=[])
    kept = list(records)
    for step in steps:
        report = StepReport(step.name, step.config_params, 0, 0, 0)
        kept = apply_step(step, kept, result, report)
        result.steps.append(report)
    result.kept = kept
    return result


def apply_step(
    step: FilterStep, records: list[HarvestRecord], result: FilterResult, report: StepReport, stream=None, inputs=None
) -> list[HarvestRecord]:
    """Run one step (or, given, its `stream`, with its `stream_inputs` where made) on `records`: the
    survivors; drops, changes and counts go to `result` and (added to what it holds) `report`."""
    started = time.perf_counter()
    if stream is None:
        output = step.function(records, step.params)
    else:
        output = stream(records) if inputs is None else stream(records, inputs)
    verdicts, replaced, notes = _outcome(step, output, records)
    survivors: list[HarvestRecord] = []
    for original, record, reason, note in zip(records, replaced, verdicts, notes):
        if reason is not None:
            category = reason_category(reason)
            report.reasons[category] = report.reasons.get(category, 0) + 1
            result.dropped.append(DroppedRecord(filter=step.name, reason=reason, record=original))
            continue
        if record is not original:
            # a changed record's arrays are what it holds (pii sets them None), never the ledger's
            record = record.model_copy().with_flat_arrays(None) if record.flat_arrays is not None else record
        survivors.append(record)
        if record is not original:
            category = reason_category(note or "modified")
            report.modified += 1
            report.modified_reasons[category] = report.modified_reasons.get(category, 0) + 1
            result.modified.append(ModifiedRecord(step.name, note or "modified", record.request_key))
    report.input += len(records)
    report.kept += len(survivors)
    report.dropped += len(records) - len(survivors)
    report.seconds = round(report.seconds + time.perf_counter() - started, 4)
    return survivors


def _outcome(step: FilterStep, output: Any, records: list[HarvestRecord]):
    """(verdicts, records, notes) from what a filter returned, checked for length."""
    if isinstance(output, tuple):
        outcome = FilterOutcome(*output)
        verdicts, replaced = list(outcome.verdicts), list(outcome.records)
        notes = list(outcome.notes) if outcome.notes is not None else [None] * len(records)
    else:
        verdicts, replaced, notes = list(output), records, [None] * len(records)
    for what, values in (("verdicts", verdicts), ("records", replaced), ("notes", notes)):
        if len(values) != len(records):
            raise RuntimeError(f"filter {step.name} returned {len(values)} {what} for {len(records)} records")
    bad = next((v for v in verdicts if v is not None and not isinstance(v, str)), None)
    if bad is not None:
        raise RuntimeError(f"filter {step.name} returned a verdict {bad!r}; use None to keep, a reason string to drop")
    return verdicts, replaced, notes
