"""The audit of a run folder (design §9): manifest, reports, ML-BOM, verification and row lineage.

    run(run_dir, config)          → audit/manifest.json, report.md, report.html, bom.cdx.json
    verify_audit(run_dir)         → every changed, missing or extra file (empty list: all match)
    trace(run_dir, id)            → a prompt's or training row's pack, teacher, decision and filters

The audit reads the run folder with json, store.LedgerReader (read-only) and pyarrow; it never
imports torch, transformers or datasets, and works on a run at any stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthdistill.audit.binding import checkpoint_ledger, record_manifest_hash, write_seal
from synthdistill.audit.bom import build_bom
from synthdistill.audit.hashing import hash_file
from synthdistill.audit.lineage import render_trace, trace
from synthdistill.audit.manifest import build_manifest
from synthdistill.audit.report_render import render_html, render_markdown
from synthdistill.audit.report_sections import report_sections
from synthdistill.audit.verify import Problem, verify_audit
from synthdistill.errors import StageError
from synthdistill.policy import recheck_use
from synthdistill.run_layout import RunLayout
from synthdistill.safe_write import write_text

__all__ = ["Problem", "render_trace", "run", "trace", "verify_audit"]


def _write(path: Path, text: str) -> None:
    # Beside and rename: a crash never leaves a half-written report in place; a symlinked target is refused.
    write_text(path, text, inside=path.parent.parent)


def run(run_dir: Path, config=None) -> dict[str, Any]:
    """Write the audit folder of a run and return a summary with its paths.

    The reports and the BOM are written first and their hashes go into the manifest
    (`audit_files`), which is written last.
    """
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise StageError(f"no run folder at {run_dir}; run `synthdistill harvest` first")
    if config is not None:
        recheck_use(config, "audit", required=False)  # a broader use is decided again before the report says anything
    checkpoint_ledger(run_dir)  # the ledger's hash must cover writes still in its -wal file
    manifest = build_manifest(run_dir, config)
    layout = RunLayout(run_dir)
    layout.audit_dir.mkdir(parents=True, exist_ok=True)
    sections = report_sections(manifest)
    _write(layout.report_md, render_markdown(manifest, sections))
    _write(layout.report_html, render_html(manifest, sections))
    _write(layout.bom, json.dumps(build_bom(manifest), indent=2, ensure_ascii=False) + "\n")
    for path in layout.audit_reports:
        sha, size, _ = hash_file(path)
        manifest["audit_files"].append({"path": path.name, "sha256": sha, "size": size})
    _write(layout.manifest, json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
    manifest_sha256 = record_manifest_hash(run_dir)
    sealed = write_seal(run_dir)
    teacher = manifest["teachers"][0]
    return {
        "audit_dir": str(layout.audit_dir),
        "manifest": str(layout.manifest),
        "manifest_sha256": manifest_sha256,
        "manifest_sealed": sealed,
        "report_md": str(layout.report_md),
        "report_html": str(layout.report_html),
        "bom": str(layout.bom),
        "artifacts": len(manifest["artifacts"]),
        "teacher": teacher.get("model"),
        "policy_id": teacher.get("policy_id"),
        "decision": teacher.get("decision"),
        "obligations": [o.get("id") for o in teacher.get("obligations") or []],
        "secret_found_in": manifest["secrets"]["found_in"],
    }
