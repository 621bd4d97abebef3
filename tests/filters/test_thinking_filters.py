"""Filters for a thinking teacher: `select` (rejection sampling by the verifier), `length` by part, `dedup` with the trace."""

from __future__ import annotations

from synthdistill.filters import FilterSpec, parse_filter_spec, run_filters
from synthdistill.filters.length import LengthParams, length
from synthdistill.filters.select import SelectParams, select
from tests.records_fixtures import make_record

VERIFY = {"kind": "answer", "field": "answer", "pattern": "Answer: (\\d+)"}


def _samples():
    """Two prompts, three samples each; sample texts of different lengths, some wrong."""
    records = []
    for question, answer, texts in (
        ("2+2?", 4, ["long working... Answer: 4", "Answer: 5", "Answer: 4"]),
        ("3+3?", 6, ["Answer: 7", "Answer: 8", "Answer: 9"]),
    ):
        for i, text in enumerate(texts):
            record = make_record(question, text, sample_index=i)
            records.append(record.model_copy(update={"variables": {"answer": answer}}))
    return records


def _verdicts(best_of):
    params = SelectParams.model_validate({"best-of": best_of}).with_verifiers({"demo": VERIFY})
    return select(_samples(), params)


def test_shortest_first_and_all_correct():
    incorrect = "select: incorrect (answer 5 != expected 4 (off by 1, tolerance 1e-06))"
    assert _verdicts("shortest-correct")[:3] == ["select: not shortest", incorrect, None]
    assert _verdicts("first-correct")[:3] == [None, incorrect, "select: not first"]
    assert _verdicts("all-correct")[:3] == [None, incorrect, None]
    assert all(v.startswith("select: incorrect") for v in _verdicts("shortest-correct")[3:])


def test_select_in_the_pipeline_keeps_every_dropped_reason():
    spec = parse_filter_spec({"select": {"best_of": "first-correct"}})
    assert spec == FilterSpec(name="select", params={"best_of": "first-correct"})
    from synthdistill.filters import resolve_step

    step = resolve_step(spec)
    step = step.__class__(step.name, step.params.with_verifiers({"demo": VERIFY}), step.function, step.config_params)
    result = run_filters(_samples(), [step])
    assert [r.sample_index for r in result.kept] == [0]
    assert sorted(d.reason.split(" (")[0] for d in result.dropped) == ["select: incorrect"] * 4 + ["select: not first"]
    assert result.steps[0].reasons == {"select": 5}


def test_length_bounds_trace_and_answer_apart():
    record = make_record("q", "Answer: 4").model_copy(
        update={"reasoning": "hmm " * 10, "reasoning_span": [0, 10], "answer_span": [10, 12]}
    )
    assert length([record], LengthParams(max_reasoning_tokens=10, max_answer_tokens=2)) == [None]
    assert length([record], LengthParams(max_reasoning_tokens=9)) == [
        "too-long: trace of 10 tokens > max_reasoning_tokens 9"
    ]
    assert length([record], LengthParams(max_answer_tokens=1)) == ["too-long: answer of 2 tokens > max_answer_tokens 1"]


def test_dedup_compares_the_trace_too():
    from synthdistill.filters.dedup import DedupParams, dedup

    same_answer = [
        make_record("2+2?", "Answer: 4", sample_index=i).model_copy(update={"reasoning": trace})
        for i, trace in enumerate(["Two and two.", "Count: 1, 2, 3, 4.", "Two and two."])
    ]
    verdicts = dedup(same_answer, DedupParams(scope="prompt"))
    assert verdicts[:2] == [None, None] and verdicts[2] == f"exact-duplicate: of {same_answer[0].request_key}"
