"""`synthdistill audit -c FILE`, `audit verify RUN_DIR` and `audit trace ID`, through `synthdistill.cli.main`."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from synthdistill.cli import main
from tests.audit_fixtures import TEACHER, make_run

TRAIN = "datasets/sft/data/train-00000-of-00001.parquet"


@pytest.fixture()
def run(tmp_path):
    return make_run(tmp_path)


def test_audit_writes_the_four_files(run, capsys):
    assert main(["audit", "-c", str(run.config_path)]) == 0
    out = capsys.readouterr().out
    html = run.run_dir / "audit" / "report.html"
    assert out.replace("\n", "").startswith(
        f"audit: 10 artifacts hashed; teacher {TEACHER}, policy fake-teacher: allow-with-obligations → "
    )
    assert sorted(p.name for p in html.parent.iterdir()) == [
        "bom.cdx.json",
        "manifest.json",
        "manifest.sha256",  # the manifest's own hash (issue 14: `audit verify --expect`)
        "report.html",
        "report.md",
    ]


def test_audit_json_summary(run, capsys):
    assert main(["audit", "-c", str(run.config_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["artifacts"], summary["teacher"], summary["decision"]) == (10, TEACHER, "allow-with-obligations")
    assert summary["report_html"] == str(run.run_dir / "audit" / "report.html")


def test_audit_without_a_config_file_is_exit_2(tmp_path, capsys):
    assert main(["audit", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_verify_passes_then_fails_naming_the_flipped_parquet_file(run, capsys):
    assert main(["audit", "-c", str(run.config_path)]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", str(run.run_dir)]) == 0
    assert "verify: every hash in" in capsys.readouterr().out
    path = run.run_dir / TRAIN
    data = bytearray(path.read_bytes())
    data[50] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["audit", "verify", str(run.run_dir)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"changed: {TRAIN} (sha256 ")
    assert "1 file(s) differ from the audit manifest" in captured.err


def test_verify_json_lists_the_problems(run, capsys):
    assert main(["audit", "-c", str(run.config_path)]) == 0
    (run.run_dir / "filtered" / "kept.parquet").unlink()
    capsys.readouterr()
    assert main(["--json", "audit", "verify", str(run.run_dir)]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False
    assert [(p["kind"], p["path"]) for p in result["problems"]] == [("missing", "filtered/kept.parquet")]


def test_verify_of_a_run_without_an_audit_is_exit_1(tmp_path, capsys):
    assert main(["audit", "verify", str(tmp_path)]) == 1
    assert "no audit manifest" in capsys.readouterr().err


def test_trace_a_training_row(run, capsys):
    row_id = pq.read_table(run.run_dir / TRAIN).column("row_id").to_pylist()[0]
    assert main(["audit", "trace", row_id, "-c", str(run.config_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"trace {row_id} in {run.run_dir}")
    assert "pack       audit-demo 1.2.0" in out and f"teacher    {TEACHER} answered as" in out
    assert "filters    kept; passed: finished, dedup" in out and "dataset    sft train" in out


def test_trace_by_run_dir_and_json(run, capsys):
    row_id = pq.read_table(run.run_dir / TRAIN).column("row_id").to_pylist()[0]
    assert main(["audit", "trace", row_id, "--run-dir", str(run.run_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["request_key"] for s in result["samples"]] == [row_id]


def test_trace_an_unknown_id_is_exit_2(run, capsys):
    assert main(["audit", "trace", "0000000000", "-c", str(run.config_path)]) == 2
    assert "no prompt id or training-row id '0000000000'" in capsys.readouterr().err
