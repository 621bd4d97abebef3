"""A run with an API key in the environment leaves no trace of it in any file of the run folder."""

from __future__ import annotations

import json
import secrets

from synthdistill.cli import main
from tests.audit_fixtures import make_run


def _files_holding(root, needle: bytes) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes())


def test_no_file_of_the_run_folder_holds_the_api_key(tmp_path, monkeypatch, capsys):
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("AUDIT_TEST_API_KEY", key)
    run = make_run(tmp_path, api_key=key)  # the fake server refuses requests without this key
    assert main(["audit", "-c", str(run.config_path)]) == 0
    capsys.readouterr()
    files = [p for p in run.run_dir.rglob("*") if p.is_file()]
    assert (
        len(files) == 16
    )  # 10 artifacts, 4 audit files, manifest.sha256 and the run folder's lock file: all read below
    assert _files_holding(run.run_dir, key.encode()) == []
    assert _files_holding(run.run_dir, key[8:].encode()) == []  # not even the key without its prefix
    manifest = json.loads((run.run_dir / "audit" / "manifest.json").read_text())
    assert manifest["secrets"] == {
        "api_key_env": "AUDIT_TEST_API_KEY",
        "checked": True,
        "files_scanned": 10,
        "found_in": [],
        "note": "the value of AUDIT_TEST_API_KEY occurs in no file of the run folder",
    }
    assert manifest["inputs"]["config"]["settings"]["teacher"]["api_key_env"] == "AUDIT_TEST_API_KEY"


def test_the_audit_names_a_file_that_holds_the_key(tmp_path, monkeypatch, capsys):
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("AUDIT_TEST_API_KEY", key)
    run = make_run(tmp_path, api_key=key)
    (run.run_dir / "filtered" / "debug.log").write_text(f"Authorization: Bearer {key}\n")
    assert main(["audit", "-c", str(run.config_path)]) == 0
    assert "the API key's value was found in: filtered/debug.log" in capsys.readouterr().err
    manifest = json.loads((run.run_dir / "audit" / "manifest.json").read_text())
    assert manifest["secrets"]["found_in"] == ["filtered/debug.log"]
    assert key not in (run.run_dir / "audit" / "manifest.json").read_text()
