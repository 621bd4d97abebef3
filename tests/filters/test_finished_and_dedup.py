"""The foundation filters: `finished` and `dedup`, and the pipeline's bookkeeping."""

from __future__ import annotations

from synthdistill.config import FilterSpec
from synthdistill.filters import run_filters
from synthdistill.filters.dedup import DedupParams, dedup, normalise
from synthdistill.filters.finished import FinishedParams, finished
from tests.records_fixtures import make_record


def test_finished_drops_truncated_and_empty_answers():
    records = [
        make_record("a", "complete answer"),
        make_record("b", "cut off mid", finish_reason="length"),
        make_record("c", "   "),
    ]
    assert finished(records, FinishedParams()) == [None, "truncated", "empty"]


def test_exact_dedup_on_normalised_text_keeps_the_first():
    records = [
        make_record("q1", "Paris is the capital."),
        make_record("q2", "  paris IS the   capital. "),
        make_record("q3", "Lyon is a city."),
    ]
    assert dedup(records, DedupParams()) == [None, f"exact-duplicate: of {records[0].request_key}", None]
    assert normalise(" A\tb  C ") == "a b c"


def test_near_dedup_catches_small_edits_but_not_different_answers():
    base = "the quick brown fox jumps over the lazy dog near the quiet river bank every single morning at dawn"
    records = [
        make_record("q1", base),
        make_record("q2", base + " today"),
        make_record("q3", "photosynthesis converts light energy into chemical energy stored in glucose molecules"),
    ]
    verdicts = dedup(records, DedupParams(exact=True, near_threshold=0.7))
    assert verdicts == [None, f"near-duplicate: like {records[0].request_key}", None]


def test_pipeline_counts_and_keeps_dropped_records_with_reasons():
    records = [
        make_record("a", "one"),
        make_record("b", "one"),
        make_record("c", "two", finish_reason="length"),
        make_record("d", "three"),
    ]
    result = run_filters(records, [FilterSpec(name="finished"), FilterSpec(name="dedup", params={"exact": True})])
    assert [r.text for r in result.kept] == ["one", "three"]
    assert [(d.filter, d.reason, d.record.text) for d in result.dropped] == [
        ("finished", "truncated", "two"),
        ("dedup", f"exact-duplicate: of {records[0].request_key}", "one"),
    ]
    assert [(s.name, s.input, s.kept, s.dropped, s.reasons) for s in result.steps] == [
        ("finished", 4, 3, 1, {"truncated": 1}),
        ("dedup", 3, 2, 1, {"exact-duplicate": 1}),
    ]


def test_dedup_scope_prompt_keeps_the_same_answer_to_different_prompts():
    records = [
        make_record("Is 7 prime?", "Yes."),
        make_record("Is 11 prime?", "Yes."),
        make_record("Is 7 prime?", "yes.", sample_index=1),
    ]
    assert dedup(records, DedupParams(scope="prompt")) == [None, None, f"exact-duplicate: of {records[0].request_key}"]
    assert dedup(records, DedupParams(scope="all"))[1] == f"exact-duplicate: of {records[0].request_key}"


def test_near_dedup_confirms_lsh_candidates_with_the_signature_estimate():
    # Two answers sharing half their shingles must survive a 0.9 threshold, whatever the buckets say.
    first = " ".join(f"alpha{i}" for i in range(40))
    second = " ".join(f"alpha{i}" for i in range(20)) + " " + " ".join(f"beta{i}" for i in range(20))
    records = [make_record("q1", first), make_record("q2", second), make_record("q3", first + " end")]
    assert dedup(records, DedupParams(exact=False, near_threshold=0.9)) == [
        None,
        None,
        f"near-duplicate: like {records[0].request_key}",
    ]
