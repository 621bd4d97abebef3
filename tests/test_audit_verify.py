"""`verify_audit`: every changed, missing or extra file is named; the audit's own extra files are not."""

from __future__ import annotations

import pytest

from synthdistill import audit
from synthdistill.audit import verify_audit
from synthdistill.errors import StageError
from tests.audit_fixtures import make_run

TRAIN = "datasets/sft/data/train-00000-of-00001.parquet"


@pytest.fixture()
def run(tmp_path):
    run = make_run(tmp_path)
    audit.run(run.run_dir, run.config)
    return run


def _flip_one_byte(path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_untouched_run_verifies(run):
    assert verify_audit(run.run_dir) == []


def test_one_flipped_byte_in_a_parquet_file_is_named(run):
    path = run.run_dir / TRAIN
    size = path.stat().st_size
    _flip_one_byte(path)
    problems = verify_audit(run.run_dir)
    assert [(p.kind, p.path) for p in problems] == [("changed", TRAIN)]
    assert f"{size} → {size} bytes" in problems[0].detail


def test_missing_extra_and_changed_files_are_each_named(run):
    (run.run_dir / "filtered" / "dropped.parquet").unlink()
    (run.run_dir / "datasets" / "sft" / "notes.txt").write_text("added later")
    with (run.run_dir / "harvest" / "decision.json").open("a") as handle:
        handle.write(" ")
    problems = verify_audit(run.run_dir)
    assert sorted((p.kind, p.path) for p in problems) == [
        ("changed", "harvest/decision.json"),
        ("extra", "datasets/sft/notes.txt"),
        ("missing", "filtered/dropped.parquet"),
    ]
    assert str(problems[0]).startswith(f"{problems[0].kind}: {problems[0].path} (")


def test_audit_files_count_only_where_the_manifest_covers_them(run):
    audit = run.run_dir / "audit"
    (audit / "notes-by-the-reviewer.md").write_text("fine")  # not manifest-covered: ignored
    (run.run_dir / "harvest" / "ledger.sqlite-wal").write_bytes(b"")  # SQLite's transient file: ignored
    assert verify_audit(run.run_dir) == []
    _flip_one_byte(audit / "report.html", 20)
    assert [(p.kind, p.path) for p in verify_audit(run.run_dir)] == [("changed", "audit/report.html")]


def test_an_input_changed_since_the_run_is_named(run):
    policy = run.project / "policies" / "fake.yaml"
    policy.write_text(policy.read_text().replace("A test policy.", "Edited."))
    pack_rows = run.project / "prompts" / "audit-demo" / "rows.jsonl"
    pack_rows.write_text(pack_rows.read_text() + '{"question": "New?"}\n')
    assert sorted((p.kind, p.path) for p in verify_audit(run.run_dir)) == [
        ("changed", str(policy)),
        ("changed", str(pack_rows)),
    ]


def test_verify_without_an_audit_is_a_stage_error(tmp_path):
    with pytest.raises(StageError, match="no audit manifest"):
        verify_audit(tmp_path)
