"""`audit verify`: recompute every hash of a manifest and name each changed, missing or extra file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from synthdistill.audit.binding import manifest_hash, pending_wal, recorded_manifest_hash, seal_problem
from synthdistill.audit.hashing import artifact_paths, hash_file
from synthdistill.errors import StageError
from synthdistill.run_layout import RunLayout


@dataclass(frozen=True)
class Problem:
    """One difference between the manifest and the run folder."""

    kind: str  # changed | missing | extra
    path: str  # relative to the run folder (inputs outside it: absolute)
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path} ({self.detail})"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def read_manifest(run_dir: Path) -> dict:
    path = RunLayout(run_dir).manifest
    if not path.is_file():
        raise StageError(f"no audit manifest at {path}; run `synthdistill audit -c distill.yaml` first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise StageError(f"the audit manifest {path} is not valid JSON: {exc}") from None


def _compare(path: Path, shown: str, sha256: str, size: int) -> Problem | None:
    if not path.is_file():
        return Problem("missing", shown, "listed in the manifest, not on disk")
    actual_sha, actual_size, _ = hash_file(path)
    if actual_sha != sha256:
        return Problem(
            "changed",
            shown,
            f"sha256 {sha256[:12]}… in the manifest, {actual_sha[:12]}… now; {size} → {actual_size} bytes",
        )
    return None


def verify_audit(run_dir: Path, expect: str | None = None) -> list[Problem]:
    """Every difference between `audit/manifest.json` and the run folder; empty when all hashes match.

    Checked: each artifact (changed / missing), each file of the run folder the manifest
    does not list (extra), the audit's own report and BOM files, and the config, packs and
    policy files the run used where they still exist (an input that moved is not a problem);
    a non-empty write-ahead log beside the ledger (writes the hashed ledger does not hold);
    and, with `expect`, the manifest's own sha256 (see audit/binding.py).
    """
    run_dir = Path(run_dir).resolve()
    layout = RunLayout(run_dir)
    manifest = read_manifest(run_dir)
    problems: list[Problem] = []
    actual = manifest_hash(run_dir)
    manifest_shown = layout.relative(layout.manifest)
    if expect is not None and actual != expect.strip().lower():
        problems.append(
            Problem(
                "changed",
                manifest_shown,
                f"sha256 {actual} where {expect.strip()} was expected: the manifest was rewritten",
            )
        )
    recorded = recorded_manifest_hash(run_dir)
    if recorded is not None and recorded != actual:
        problems.append(
            Problem(
                "changed",
                manifest_shown,
                f"sha256 {actual}, not the {recorded} that "
                f"{layout.relative(layout.manifest_sha256)} records: the manifest was edited after the audit",
            )
        )
    if (sealed := seal_problem(run_dir)) is not None:
        problems.append(Problem(*sealed))
    wal_bytes = pending_wal(run_dir)
    if wal_bytes:
        problems.append(
            Problem(
                "changed",
                layout.relative(layout.ledger),
                f"its write-ahead log holds {wal_bytes} bytes of writes that the hashed ledger "
                "does not (reads already see them)",
            )
        )
    listed = {entry["path"]: entry for entry in manifest.get("artifacts", [])}
    for shown, entry in listed.items():
        problem = _compare(run_dir / shown, shown, entry["sha256"], entry["size"])
        if problem:
            problems.append(problem)
    for relative in artifact_paths(run_dir):
        if relative.as_posix() not in listed:
            problems.append(Problem("extra", relative.as_posix(), "on disk, not in the manifest"))
    audit = layout.relative(layout.audit_dir)
    for entry in manifest.get("audit_files", []):
        shown = f"{audit}/{entry['path']}"
        problem = _compare(run_dir / shown, shown, entry["sha256"], entry["size"])
        if problem:
            problems.append(problem)
    problems.extend(_input_problems(manifest.get("inputs") or {}))
    return problems


def _input_problems(inputs: dict) -> list[Problem]:
    problems = []
    config = inputs.get("config")
    if config and Path(config["path"]).is_file():
        problem = _compare(Path(config["path"]), config["path"], config["sha256"], config["size"])
        if problem:
            problems.append(problem)
    for pack in inputs.get("packs", []):
        folder = Path(pack.get("path") or "")
        for name, sha in (pack.get("files") or {}).items():
            if pack.get("path") and (folder / name).is_file():
                actual, _, _ = hash_file(folder / name)
                if actual != sha:
                    problems.append(
                        Problem("changed", str(folder / name), f"pack '{pack['name']}' file differs from the run's")
                    )
    for policy in inputs.get("policies", []):
        path = Path(policy.get("path") or "")
        if policy.get("path") and policy.get("sha256") and path.is_file():
            actual, _, _ = hash_file(path)
            if actual != policy["sha256"]:
                problems.append(
                    Problem("changed", str(path), f"policy '{policy['id']}' differs from the one that decided")
                )
    return problems
