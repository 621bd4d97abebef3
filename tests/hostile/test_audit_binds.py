"""Issue 14, point 6: the audit binds: WAL writes are hashed or reported, and a rewritten manifest is caught."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from tests.harvest_fixtures import ledger_of, write_project
from tests.hostile.cli_process import run_cli
from tests.openai_server import FakeOpenAIServer

# Edit one answer and leave the edit in the -wal file: os._exit skips the close that would checkpoint it.
EDIT_IN_WAL = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("UPDATE requests SET record = json_set(record, '$.text', 'tampered') WHERE rowid = 1")
os._exit(0)
"""


def _audited(tmp_path):
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 4)
        assert run_cli("harvest", "-c", str(config), cwd=tmp_path).code == 0
    audit = run_cli("audit", "-c", str(config), "--json", cwd=tmp_path)
    assert audit.code == 0, audit.err
    return config, tmp_path / "outputs" / "run", json.loads(audit.out)


def _edit_in_wal(ledger) -> None:
    subprocess.run([sys.executable, "-c", EDIT_IN_WAL, str(ledger)], check=True)
    wal = ledger.with_name(ledger.name + "-wal")
    assert wal.stat().st_size > 0


def test_verify_fails_on_an_edit_still_in_the_wal(tmp_path):
    config, run_dir, _ = _audited(tmp_path)
    ledger = ledger_of(tmp_path)
    _edit_in_wal(ledger)
    result = run_cli("audit", "verify", str(run_dir), cwd=tmp_path)
    assert result.code == 1, result.out + result.err
    assert result.out.splitlines()[0].startswith("changed: harvest/ledger.sqlite (its write-ahead log holds ")
    assert result.out.splitlines()[0].endswith(
        " bytes of writes that the hashed ledger does not (reads already see them))"
    )
    assert result.err.strip() == f"error: 1 file(s) differ from the audit manifest of {run_dir}"


def test_audit_checkpoints_the_wal_before_hashing(tmp_path):
    config, run_dir, _ = _audited(tmp_path)
    ledger = ledger_of(tmp_path)
    _edit_in_wal(ledger)
    assert run_cli("audit", "-c", str(config), cwd=tmp_path).code == 0
    assert not ledger.with_name(ledger.name + "-wal").exists()
    manifest = json.loads((run_dir / "audit" / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["path"] == "harvest/ledger.sqlite")
    assert entry["sha256"] == hashlib.sha256(ledger.read_bytes()).hexdigest()  # the edit is in the hashed bytes
    assert run_cli("audit", "verify", str(run_dir), cwd=tmp_path).code == 0


def test_the_manifest_hash_is_printed_recorded_and_expected(tmp_path):
    config, run_dir, summary = _audited(tmp_path)
    sha = hashlib.sha256((run_dir / "audit" / "manifest.json").read_bytes()).hexdigest()
    assert summary["manifest_sha256"] == sha
    assert (run_dir / "audit" / "manifest.sha256").read_text() == f"{sha}  manifest.json\n"
    assert run_cli("audit", "verify", str(run_dir), "--expect", sha, cwd=tmp_path).code == 0
    human = run_cli("audit", "-c", str(config), cwd=tmp_path)  # a new audit: a new manifest (its time differs)
    sha = hashlib.sha256((run_dir / "audit" / "manifest.json").read_bytes()).hexdigest()
    assert human.out.splitlines()[-1] == (
        f"audit: manifest sha256 {sha}; keep it elsewhere and check the run later with "
        f"`synthdistill audit verify {run_dir} --expect {sha}`"
    )


def test_expect_catches_a_manifest_rewritten_with_the_file_it_describes(tmp_path):
    config, run_dir, summary = _audited(tmp_path)
    noted = summary["manifest_sha256"]
    decision = run_dir / "harvest" / "decision.json"
    decision.write_text(decision.read_text().replace('"allow"', '"allow" '))
    manifest_path = run_dir / "audit" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["artifacts"]:
        if entry["path"] == "harvest/decision.json":
            entry["sha256"] = hashlib.sha256(decision.read_bytes()).hexdigest()
            entry["size"] = decision.stat().st_size
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    forged = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    (run_dir / "audit" / "manifest.sha256").write_text(f"{forged}  manifest.json\n")  # the forger rewrites it too

    unbound = run_cli("audit", "verify", str(run_dir), cwd=tmp_path)
    assert unbound.code == 0  # without a hash kept elsewhere, a consistent forgery cannot be told apart
    bound = run_cli("audit", "verify", str(run_dir), "--expect", noted, cwd=tmp_path)
    assert bound.code == 1
    assert bound.out.splitlines()[0] == (
        f"changed: audit/manifest.json (sha256 {forged} where {noted} was expected: the manifest was rewritten)"
    )


def test_expect_must_be_a_sha256(tmp_path):
    _, run_dir, _ = _audited(tmp_path)
    result = run_cli("audit", "verify", str(run_dir), "--expect", "abc", cwd=tmp_path)
    assert result.code == 2
    assert result.err.strip() == "error: --expect takes the manifest's sha256 (64 hex digits), got 'abc'"


def test_a_manifest_sealed_with_a_key_fails_verify_once_rewritten(tmp_path):
    import os

    key_env = {**os.environ, "SYNTHDISTILL_AUDIT_KEY": "k" * 32}
    with FakeOpenAIServer() as server:
        config = write_project(tmp_path, server.base_url, 2)
        assert run_cli("harvest", "-c", str(config), cwd=tmp_path).code == 0
    audit = run_cli("audit", "-c", str(config), "--json", cwd=tmp_path, env=key_env)
    assert audit.code == 0, audit.err
    assert json.loads(audit.out)["manifest_sealed"] is True
    run_dir = tmp_path / "outputs" / "run"
    assert run_cli("audit", "verify", str(run_dir), cwd=tmp_path, env=key_env).code == 0
    wrong_key = run_cli(
        "audit", "verify", str(run_dir), cwd=tmp_path, env={**key_env, "SYNTHDISTILL_AUDIT_KEY": "w" * 32}
    )
    assert wrong_key.code == 1
    manifest = run_dir / "audit" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"size"', '"size" '))  # a forger's rewrite
    forged = hashlib.sha256(manifest.read_bytes()).hexdigest()
    (run_dir / "audit" / "manifest.sha256").write_text(f"{forged}  manifest.json\n")
    result = run_cli("audit", "verify", str(run_dir), cwd=tmp_path, env=key_env)
    assert result.code == 1
    assert result.out.splitlines()[0] == (
        "changed: audit/manifest.json (its seal does not match SYNTHDISTILL_AUDIT_KEY: the manifest was "
        "rewritten, or sealed with another key)"
    )
    short = run_cli("audit", "verify", str(run_dir), cwd=tmp_path, env={**key_env, "SYNTHDISTILL_AUDIT_KEY": "x"})
    assert short.code == 2
    assert short.err.strip() == "error: SYNTHDISTILL_AUDIT_KEY is shorter than 16 characters; use a long random key"
