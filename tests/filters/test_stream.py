"""The filter stage in batches and in worker processes: the same files, order and funnel as one pass."""

from __future__ import annotations

import json

import pytest

from synthdistill import filter_stage
from synthdistill.filters.dedup import Deduplicator, DedupParams, dedup
from tests.filtered_fixtures import dropped_rows, kept_records
from tests.filters.test_pipeline import RECORDS, harvest, project
from tests.records_fixtures import make_record

BASE = "the quick brown fox jumps over the lazy dog near the quiet river bank every single morning at dawn"


def _many():
    """RECORDS three times over as further samples of the same prompts; every third copy says something new."""
    records = []
    for copy in range(3):
        for i, (_, record) in enumerate(RECORDS):
            text = record.text if copy == 0 or i % 3 else f"{record.text} (take {copy})"
            records.append(
                record.model_copy(
                    update={"request_key": f"{record.request_key}-{copy}", "sample_index": copy, "text": text}
                )
            )
    return records


def _output(config) -> dict:
    layout = config.layout
    report = json.loads(layout.filter_report.read_text())
    for step in report["steps"]:
        step.pop("seconds")
    return {
        "kept": layout.kept.read_bytes(),
        "dropped": layout.dropped.read_bytes(),
        "modified": layout.modified.read_text(),
        "report": report,
    }


def test_batches_and_workers_write_the_same_files_and_funnel_as_one_pass(tmp_path, monkeypatch):
    config = project(tmp_path)
    records = _many()
    harvest(config, records)
    filter_stage.run(config)  # one batch: every record at once
    whole = _output(config)
    kept_whole = kept_records(config.run_dir)

    monkeypatch.setattr(filter_stage, "BATCH", 4)  # 30 records in 8 batches
    filter_stage.run(config, workers=1)
    one = _output(config)
    assert kept_records(config.run_dir) == kept_whole  # the same records, in harvest order
    assert one["report"] == whole["report"] and one["modified"] == whole["modified"]
    # dedup catches the copies across batches: 7 of its 20 records, as in one pass
    assert [step["dropped"] for step in one["report"]["steps"]] == [4, 3, 0, 3, 7, 3, 3, 1, 0]

    filter_stage.run(config, workers=2)
    assert _output(config) == one  # byte for byte


def test_dropped_rows_keep_their_filter_reason_and_whole_record_in_parquet(tmp_path):
    config = project(tmp_path)
    harvest(config, [record for _, record in RECORDS])
    filter_stage.run(config, workers=2)
    dropped = dropped_rows(config.run_dir)
    assert [(d["filter"], d["reason"].split(": ")[0]) for d in dropped][:3] == [
        ("finished", "truncated"),
        ("finished", "empty"),
        ("refusal", "refusal"),
    ]
    expected = RECORDS[1][1]
    assert dropped[0]["record"]["request_key"] == expected.request_key
    assert dropped[0]["record"]["token_logprobs"] == pytest.approx(expected.token_logprobs, rel=1e-7)  # float32
    assert dropped[0]["record"]["messages"] == [m.model_dump() for m in expected.messages]


def test_dedup_fed_batch_after_batch_gives_the_verdicts_of_one_call():
    records = [
        make_record("q1", BASE),
        make_record("q2", "Paris is the capital."),
        make_record("q3", BASE + " today"),
        make_record("q4", "  paris IS the   capital. "),
        make_record("q5", "photosynthesis converts light energy into chemical energy stored in glucose"),
        make_record("q6", BASE + " again today"),
        make_record("q7", "Paris is the capital."),
    ]
    for params in (DedupParams(exact=True, near_threshold=0.7), DedupParams(exact=True, scope="prompt")):
        streamed = Deduplicator(params)
        verdicts = [v for start in range(0, len(records), 2) for v in streamed(records[start : start + 2])]
        assert verdicts == dedup(records, params)
    assert dedup(records, DedupParams(exact=True, near_threshold=0.7)) == [
        None,
        None,
        f"near-duplicate: like {records[0].request_key}",
        f"exact-duplicate: of {records[1].request_key}",
        None,
        f"near-duplicate: like {records[0].request_key}",
        f"exact-duplicate: of {records[1].request_key}",
    ]


def test_the_cli_takes_workers_for_filter(tmp_path, capsys):
    from synthdistill.cli import main

    config = project(tmp_path)
    harvest(config, _many())
    assert main(["filter", "-c", str(config.path), "--workers", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["input"], report["kept"], report["dropped"]) == (30, 6, 24)
    assert main(["filter", "-c", str(config.path), "--workers", "0"]) == 2  # at least one


def test_arrays_no_step_reads_are_written_from_the_ledger_as_a_step_reading_them_would(tmp_path):
    """Without an array-reading step the arrays stay numpy from the ledger to Parquet: the same files.

    `confidence` reads the sampled tokens' logprobs (so records carry Python lists); with its
    bar at -100 it drops nothing, so both configs must keep, drop and redact the same records.
    """
    light = "filters:\n  - finished\n  - dedup: {exact: true, near_threshold: 0.9}\n  - pii: {action: redact}\n"
    reading = light + "  - confidence: {min_mean_logprob: -100.0}\n"
    outputs = []
    for name, filters in (("light", light), ("reading", reading)):
        config = project(tmp_path / name, filters)
        steps = [filter_stage._prepared(spec, None, config) for spec in config.filters]
        assert any(step.reads_arrays for step in steps) is (name == "reading")
        # every other record with token ids too: both of the ledger's ways of storing the strings
        ids = {"token_ids": [7, 8, 7, 9, 7], "top_ids": [[7], [8], [7], [9], [7]]}
        harvest(config, [r.model_copy(update=ids) if i % 2 else r for i, r in enumerate(_many())])
        filter_stage.run(config, workers=2 if name == "light" else 1)
        outputs.append((config.layout.kept.read_bytes(), config.layout.dropped.read_bytes()))
        kept = kept_records(config.run_dir)
        redacted = [r for r in kept if "[EMAIL]" in r["text"]]
        assert len(redacted) == 3 and all(r["token_logprobs"] is None and r["top_tokens"] is None for r in redacted)
        untouched = [r for r in kept if "[EMAIL]" not in r["text"]]
        assert len(untouched) == 12 and all(len(r["top_logprobs"]) == 5 for r in untouched)
        assert {round(r["top_logprobs"][0][0], 2) for r in untouched} == {-0.2, -3.0}  # float16 in Parquet
        assert {tuple(r["token_ids"] or ()) for r in untouched} == {(), (7, 8, 7, 9, 7)}
    assert outputs[0] == outputs[1]


def test_workers_encode_the_batches_when_dedup_ends_the_pipeline_and_the_files_are_the_same(tmp_path, monkeypatch):
    """With only streams (dedup) after the per-record steps the workers write Arrow tables and send the
    records back without arrays; the files equal those written from the records, arrays included."""
    from synthdistill.filters.stream import StreamingPipeline

    filters = "filters:\n  - finished\n  - refusal\n  - dedup: {exact: true, near_threshold: 0.9}\n"
    config = project(tmp_path, filters)
    harvest(config, _many())
    filter_stage.run(config)  # one batch
    kept_whole = kept_records(config.run_dir)
    monkeypatch.setattr(filter_stage, "BATCH", 4)  # 8 batches
    encoded, encode_on = [], [False]
    run = StreamingPipeline.run

    def recording_run(self, tasks, load, encode=None):
        for out in run(self, tasks, load, encode if encode_on[0] else None):
            encoded.append(out.tables is not None)
            yield out

    monkeypatch.setattr(StreamingPipeline, "run", recording_run)
    filter_stage.run(config, workers=1)  # written from the records, batch after batch
    from_records = _output(config)
    assert encoded == [False] * 8 and kept_records(config.run_dir) == kept_whole
    encode_on[0] = True
    for workers in (1, 2):
        encoded.clear()
        filter_stage.run(config, workers=workers)
        assert _output(config) == from_records, workers  # byte for byte
        assert encoded == [workers == 2] * 8  # from two worker processes every batch came as tables
    kept, dropped = kept_records(config.run_dir), dropped_rows(config.run_dir)
    assert [step["dropped"] for step in from_records["report"]["steps"]] == [4, 3, 9]
    assert len(kept) == 14 and all(len(r["top_logprobs"]) == 5 for r in kept)
    by_dedup = [d for d in dropped if d["filter"] == "dedup"]
    assert len(by_dedup) == 9 and all(len(d["record"]["top_logprobs"]) == 5 for d in by_dedup)

    # a per-record step after dedup (pii may redact) takes the records' way: no tables
    config = project(tmp_path / "pii", filters + "  - pii: {action: redact}\n")
    harvest(config, _many())
    encoded.clear()
    filter_stage.run(config, workers=2)
    assert encoded == [False] * 8
