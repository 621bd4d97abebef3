"""Row-level lineage: `trace` from a prompt id or a training-row id back to pack, teacher, decision, filters."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from synthdistill.audit import render_trace, trace
from synthdistill.errors import InputError
from tests.audit_fixtures import ANSWERED_AS, QUESTIONS, TEACHER, make_run
from tests.filtered_fixtures import dropped_rows, kept_records


@pytest.fixture()
def run(tmp_path):
    return make_run(tmp_path)


def _kept(run) -> list[dict]:
    return kept_records(run.run_dir)


def _row_ids(run) -> dict[str, str]:
    found = {}
    for split in ("train", "validation"):
        table = pq.read_table(run.run_dir / f"datasets/sft/data/{split}-00000-of-00001.parquet")
        found.update({row_id: split for row_id in table.column("row_id").to_pylist()})
    return found


def test_a_training_row_id_traces_to_its_prompt_teacher_decision_and_filters(run):
    row_id, split = sorted(_row_ids(run).items())[0]
    result = trace(run.run_dir, row_id)
    [sample] = result["samples"]
    record = next(r for r in _kept(run) if r["request_key"] == row_id)
    assert sample["request_key"] == row_id and sample["prompt_id"] == record["prompt_id"]
    assert (sample["pack"], sample["pack_version"], sample["status"]) == ("audit-demo", "1.2.0", "answered")
    assert sample["messages"] == record["messages"]
    assert sample["teacher"]["model_requested"] == TEACHER and sample["teacher"]["model_answered"] == ANSWERED_AS
    assert sample["harvested_at"] == record["harvested_at"]
    assert sample["policy"] == {
        "id": "fake-teacher",
        "decision": "allow-with-obligations",
        "title": "Fake Teacher Model Licence 1.0",
        "clause": "§2.1: Outputs may be used to train other models if they credit the Fake Teacher.",
    }
    assert sample["filters"] == {
        "status": "kept",
        "passed": ["finished", "dedup"],
        "dropped_by": None,
        "modified_by": [],
    }
    assert sample["datasets"] == [
        {"dataset": "sft", "split": split, "file": f"datasets/sft/data/{split}-00000-of-00001.parquet"}
    ]


def test_a_prompt_id_of_a_dropped_answer_names_the_filter_and_reason(run):
    dropped = dropped_rows(run.run_dir)
    record = next(d["record"] for d in dropped if QUESTIONS[3] in d["record"]["messages"][-1]["content"])
    [sample] = trace(run.run_dir, record["prompt_id"])["samples"]
    assert sample["filters"] == {
        "status": "dropped",
        "passed": [],
        "dropped_by": {"filter": "finished", "reason": "truncated"},
        "modified_by": [],
    }
    assert sample["datasets"] == [] and sample["finish_reason"] == "length"


def test_a_failed_request_shows_its_error(run):
    import sqlite3

    with sqlite3.connect(run.run_dir / "harvest" / "ledger.sqlite") as db:
        [(prompt_id,)] = db.execute("SELECT prompt_id FROM requests WHERE status = 'failed'").fetchall()
    [sample] = trace(run.run_dir, prompt_id)["samples"]
    assert sample["status"] == "failed" and sample["error"].startswith("500: ") and sample["filters"] is None


def test_a_unique_prefix_is_enough_and_the_text_names_everything(run):
    row_id = sorted(_row_ids(run))[0]
    result = trace(run.run_dir, row_id[:10])
    assert [s["request_key"] for s in result["samples"]] == [row_id]
    text = render_trace(result)
    assert f"row {row_id}" in text and "pack       audit-demo 1.2.0" in text
    assert f"teacher    {TEACHER} answered as {ANSWERED_AS}" in text
    assert "policy     fake-teacher: allow-with-obligations (§2.1:" in text
    assert "filters    kept; passed: finished, dedup" in text and "dataset    sft " in text


def test_an_unknown_id_is_an_input_error(run):
    with pytest.raises(InputError, match="no prompt id or training-row id 'ffffffffffff'"):
        trace(run.run_dir, "ffffffffffff")
