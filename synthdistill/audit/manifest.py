"""`audit/manifest.json`: every artifact with its hash, the inputs, the teacher's terms, counts and versions.

The manifest is the audit's single source: report.md, report.html and bom.cdx.json
are rendered from it, and `audit verify` rechecks it.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from synthdistill import __version__
from synthdistill.audit import run_facts
from synthdistill.audit.hashing import hash_artifacts, hash_file
from synthdistill.audit.terms import dataset_triple, load_policy_terms
from synthdistill.digests import json_sha256
from synthdistill.errors import PackError
from synthdistill.packs import configured_pack
from synthdistill.policy import Decision
from synthdistill.records import utc_now
from synthdistill.run_layout import RunLayout

MANIFEST_VERSION = 1
LIBRARIES = (
    "torch",
    "transformers",
    "trl",
    "datasets",
    "peft",
    "accelerate",
    "tokenizers",
    "safetensors",
    "pyarrow",
    "pydantic",
    "openai",
    "httpx",
    "jinja2",
    "datasketch",
    "typer",
)


def versions() -> dict[str, Any]:
    """Tool, Python and library versions, read from package metadata (nothing is imported)."""
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    try:
        tool = metadata.version("synthdistill")
    except metadata.PackageNotFoundError:  # a source checkout that is not installed
        tool = __version__
    return {
        "tool": {"name": "synthdistill", "version": tool},
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "libraries": libraries,
    }


def file_entry(path: Path) -> dict[str, Any]:
    sha, size, _ = hash_file(path)
    return {"path": str(path), "sha256": sha, "size": size}


def config_input(config) -> dict[str, Any] | None:
    """The config file's hash, the overrides given over it, and the effective settings (which name the
    key's variable, never the key) with their hash."""
    if config is None or not config.path.is_file():
        return None
    settings = config.model_dump(mode="json")
    return {
        **file_entry(config.path),
        "overrides": [o.to_dict() for o in config.overrides],
        "effective_sha256": json_sha256(settings),
        "settings": settings,
    }


def pack_inputs(config, datasets: dict[str, dict]) -> list[dict[str, Any]]:
    """Each prompt pack with its licence and hashes: from the config's packs, else from dataset provenance."""
    if config is not None:
        packs = []
        for reference in config.harvest.packs:
            try:
                pack = configured_pack(config, reference)
            except PackError as exc:
                packs.append({"reference": reference, "error": str(exc)})
                continue
            packs.append(
                {
                    "reference": reference,
                    "name": pack.name,
                    "version": pack.version,
                    "licence": pack.licence,
                    "source": pack.source,
                    "description": pack.description,
                    "path": str(pack.path),
                    "prompts": len(pack.prompts),
                    "sha256": pack.content_sha256(),
                    "files": pack.file_hashes(),
                }
            )
        return packs
    for info in datasets.values():
        if (info.get("provenance") or {}).get("packs"):
            return list(info["provenance"]["packs"])
    return []


def policy_inputs(decision: Decision | None, policy: dict | None) -> list[dict[str, Any]]:
    """The policy file that decided, with its hash at harvest time and now."""
    if decision is None or not decision.policy_file:
        return []
    recorded = decision.policy_sha256
    now = (policy or {}).get("sha256_now")
    return [
        {
            "id": decision.policy_id,
            "path": (policy or {}).get("path") or decision.policy_file,
            "origin": decision.origin,
            "sha256": recorded,
            "sha256_now": now,
            "unchanged_since_harvest": (recorded == now) if recorded and now else None,
        }
    ]


def _dumped(items: list) -> list[dict[str, Any]]:
    return [item.model_dump(mode="json") for item in items]


def teacher_entries(
    config, decision: Decision | None, policy: dict | None, harvest: dict | None
) -> list[dict[str, Any]]:
    """The teacher(s) with the policy decision, the deciding clause, the attestation and the obligations.

    Where the recorded decision is silent (no harvest yet), the policy file as it reads now fills in.
    """
    d, policy, harvest = decision, policy or {}, harvest or {}
    requested = harvest.get("models_requested") or []
    model = config.teacher.model if config is not None else (d and d.teacher_model) or next(iter(requested), None)
    use = (d and d.use) or (config.use.model_dump(mode="json") if config is not None else {})
    return [
        {
            "model": model,
            "models_answered": harvest.get("models_answered", []),
            "backend": config.teacher.backend
            if config is not None
            else next(iter(harvest.get("backends") or []), None),
            "host": d.teacher_host if d else None,
            "endpoints": harvest.get("endpoints", []),
            "system_fingerprints": harvest.get("system_fingerprints", []),
            "decision": d.outcome if d else None,
            "reason": d.reason if d else None,
            "policy_id": d.policy_id if d else None,
            "policy_title": (d and d.policy_title) or policy.get("title"),
            "policy_kind": (d and d.policy_kind) or policy.get("kind"),
            "policy_origin": d.origin if d else None,
            "clause": (d and d.clause) or policy.get("clause"),
            "attestation": (d and d.attestation) or use.get("attestation"),
            "obligations": _dumped(d.obligations) if d else [],
            "licence": (d and d.licence) or policy.get("licence"),
            "document": (d and d.document) or policy.get("document"),
            "outputs_for_training": (d and d.outputs_for_training) or policy.get("outputs_for_training"),
            "commercial_use": policy.get("commercial_use"),
            "conditions": (d and d.conditions) or policy.get("conditions"),
            "notes": (d and d.notes) or policy.get("notes"),
            "requires_attestation": d.requires_attestation if d else policy.get("requires_attestation"),
            "also_governed_by": _dumped(d.also_governed_by) if d else [],
            "overrides": _dumped(d.overrides) if d else [],
            "set_aside": _dumped(d.set_aside) if d else [],
            "answering_models": _dumped(d.answering_models) if d else [],
            "clause_kind": d.clause_kind if d else None,
            "use": use,
            "recorded_decision": d.model_dump(mode="json") if d else None,
        }
    ]


def funnel(harvest: dict | None, filtered: dict | None, datasets: dict[str, dict]) -> list[dict[str, Any]]:
    """Counts at every stage, each with what was dropped on the way there and why."""
    steps: list[dict[str, Any]] = []
    if harvest and "requests" in harvest:
        steps.append({"stage": "requests sent", "count": harvest["requests"], "dropped": 0, "reasons": {}})
        failed = {f"teacher error {k}": n for k, n in (harvest.get("failed_by_kind") or {}).items()}
        steps.append(
            {"stage": "answered", "count": harvest["answered"], "dropped": harvest["failed"], "reasons": failed}
        )
    if filtered:
        if not steps:
            steps.append({"stage": "filter input", "count": filtered.get("input", 0), "dropped": 0, "reasons": {}})
        for step in filtered.get("steps", []):
            steps.append(
                {
                    "stage": f"filter: {step['name']}",
                    "count": step["kept"],
                    "dropped": step["dropped"],
                    "reasons": step.get("reasons", {}),
                    "modified": step.get("modified", 0),
                    "modified_reasons": step.get("modified_reasons", {}),
                }
            )
    for kind, info in sorted(datasets.items(), key=lambda item: item[0] != "sft"):
        before = steps[-1]["count"] if steps else info["rows"]
        reasons = dict((info.get("build") or {}).get("dropped") or {})
        steps.append(
            {
                "stage": f"{kind.upper()} dataset rows",
                "count": info["rows"],
                "dropped": max(0, before - info["rows"]),
                "reasons": reasons,
            }
        )
    return steps


def timestamps(harvest, filtered, datasets, student, evaluation) -> dict[str, str | None]:
    runs = (harvest or {}).get("runs") or []
    built = [d["written_at"] for d in datasets.values() if d.get("written_at")]
    return {
        "harvest_started": runs[0]["started_at"] if runs else None,
        "harvest_finished": runs[-1]["finished_at"] if runs else None,
        "first_answer": (harvest or {}).get("first_answer_at"),
        "last_answer": (harvest or {}).get("last_answer_at"),
        "filtered": (filtered or {}).get("written_at"),
        "datasets_built": max(built) if built else None,
        "student_written": (student or {}).get("written_at"),
        "evaluated": (evaluation or {}).get("written_at"),
    }


def secret_check(config) -> tuple[str | None, str | None]:
    """(variable name, its value) of the teacher's API key, when the config names one and it is set."""
    name = config.teacher.api_key_env if config is not None else None
    return name, (os.environ.get(name) if name else None)


def build_manifest(run_dir: Path, config=None) -> dict[str, Any]:
    """Everything the audit knows about a run folder (artifacts hashed last, after every read)."""
    run_dir = Path(run_dir).resolve()
    layout = RunLayout(run_dir)
    decision = run_facts.read_decision(layout)
    policy = load_policy_terms(decision, config.project_dir if config is not None else None)
    harvest = run_facts.harvest_facts(layout)
    filtered = run_facts.filter_facts(layout)
    datasets = run_facts.dataset_facts(layout)
    student = run_facts.student_facts(layout)
    evaluation = run_facts.eval_facts(layout)
    packs = pack_inputs(config, datasets)
    for info in datasets.values():
        used = (info.get("provenance") or {}).get("packs") or packs
        info["licence"] = " AND ".join(sorted({p["licence"] for p in used if p.get("licence")})) or info["licence"]
        info["provenance_triple"] = dataset_triple([(p.get("name"), p.get("licence")) for p in used], decision, policy)
    if student is not None and config is not None and config.student is not None:
        student["name"] = config.student.name or config.name
    key_env, key = secret_check(config)
    artifacts, leaks = hash_artifacts(run_dir, key)
    return {
        "manifest_version": MANIFEST_VERSION,
        "run": {"name": config.name if config is not None else run_dir.name, "run_dir": str(run_dir)},
        "generated_at": utc_now(),
        "versions": versions(),
        "inputs": {
            "config": config_input(config),
            "stage_overrides": run_facts.config_snapshots(layout),
            "packs": packs,
            "policies": policy_inputs(decision, policy),
        },
        "teachers": teacher_entries(config, decision, policy, harvest),
        "stages": {
            "harvest": harvest,
            "filter": filtered,
            "datasets": datasets,
            "student": student,
            "eval": evaluation,
        },
        "funnel": funnel(harvest, filtered, datasets),
        "timestamps": timestamps(harvest, filtered, datasets, student, evaluation),
        "secrets": {
            "api_key_env": key_env,
            "checked": key is not None,
            "files_scanned": len(artifacts) if key is not None else 0,
            "found_in": leaks,
            "note": _secret_note(key_env, key, leaks),
        },
        "hashing": {
            "algorithm": "sha256",
            "excluded": "audit/ (listed under audit_files), SQLite transient files (*-wal, *-shm, *-journal)",
        },
        "artifacts": artifacts,
        "audit_files": [],
    }


def _secret_note(name: str | None, value: str | None, leaks: list[str]) -> str:
    if not name:
        return "the teacher needs no API key (teacher.api_key_env is not set)"
    if value is None:
        return f"not checked: {name} is not set in the environment the audit ran in"
    if leaks:
        return f"the value of {name} was FOUND in {len(leaks)} file(s) of the run folder"
    return f"the value of {name} occurs in no file of the run folder"
