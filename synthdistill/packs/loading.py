"""Find, load and validate packs: a pack by reference, each loaded once per process (reading one: reading.py)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthdistill.errors import PackError
from synthdistill.packs.reading import PACK_FILE, Pack, build_pack
from synthdistill.shipped import shipped_dir

MAX_REPORTED = 50  # row problems kept per pack; the rest are counted
# (resolved folder, limit, max_prompt_chars) → the pack and the sha256 of its files when it was read
_LOADED: dict[tuple[Path, int | None, int | None], tuple[Pack, dict[str, str]]] = {}


@dataclass
class ValidationReport:
    """What `packs validate` found in one pack folder."""

    path: Path
    name: str | None = None
    version: str | None = None
    prompts: int = 0
    errors: list[PackError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    more_errors: int = 0  # problems beyond the MAX_REPORTED kept

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "version": self.version,
            "ok": self.ok,
            "prompts": self.prompts,
            "errors": [str(e) for e in self.errors],
            "more_errors": self.more_errors,
            "warnings": self.warnings,
        }


def resolve_pack_path(reference: str, project_dir: Path | None) -> Path:
    """A pack folder: `reference` as a folder (relative to project_dir), else a shipped pack name.

    `prompts/<name>` also finds the shipped pack `<name>` when the project has no such folder.
    """
    candidate = Path(reference).expanduser()
    if not candidate.is_absolute() and project_dir is not None:
        candidate = Path(project_dir) / candidate
    if candidate.name == PACK_FILE and candidate.is_file():
        candidate = candidate.parent
    if candidate.is_dir():
        if not (candidate / PACK_FILE).is_file():
            raise PackError(f"no {PACK_FILE} in this folder; create one with `synthdistill packs new`", file=candidate)
        return candidate
    shipped = shipped_dir("prompts")
    for name in (reference, Path(reference).name if Path(reference).parent == Path("prompts") else None):
        if name and (shipped / name / PACK_FILE).is_file():
            return shipped / name
    names = shipped_pack_names()
    close = difflib.get_close_matches(Path(reference).name, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise PackError(
        f"pack '{reference}' not found: no such folder and no shipped pack of that name; {hint}"
        f"shipped packs: {', '.join(names) or 'none'}",
        file=candidate,
    )


def shipped_pack_names() -> list[str]:
    """Names of the folders under the shipped prompts/ that hold a pack.yaml."""
    root = shipped_dir("prompts")
    return sorted(p.parent.name for p in root.glob(f"*/{PACK_FILE}")) if root.is_dir() else []


def load_pack(path: Path, *, limit: int | None = None, max_prompt_chars: int | None = None) -> Pack:
    """Load and render a pack; raise PackError at the first problem (all are in validate_pack).

    `limit` stops reading rows (or expanding `variables:`) once that many prompts are
    made; `max_prompt_chars` refuses a longer prompt (the harvest passes its setting).
    A pack is rendered once per process: a second call with the same arguments returns
    the same `Pack` while the sha256 of every file it read is unchanged (treat it as read-only).
    """
    cached = cached_pack(path, limit=limit, max_prompt_chars=max_prompt_chars)
    if cached is not None:
        return cached
    pack, problems, _ = build_pack(Path(path), limit=limit, max_prompt_chars=max_prompt_chars)
    if problems:
        first = problems[0]
        if len(problems) > 1:
            more = f" (and {len(problems) - 1} more problems; run `synthdistill packs validate {path}`)"
            raise PackError(first.message + more, file=first.file, line=first.line)
        raise first
    _LOADED[(Path(path).resolve(), limit, max_prompt_chars)] = (pack, pack.file_hashes())
    return pack


def cached_pack(path: Path, *, limit: int | None = None, max_prompt_chars: int | None = None) -> Pack | None:
    """The pack `load_pack` already rendered in this process with these arguments, if its files are unchanged."""
    cached = _LOADED.get((Path(path).resolve(), limit, max_prompt_chars))
    return cached[0] if cached is not None and cached[0].file_hashes() == cached[1] else None


def validate_pack(path: Path) -> ValidationReport:
    """Every check of `packs validate`, with no request sent; problems are collected, not raised."""
    report = ValidationReport(path=Path(path))
    try:
        pack, problems, warnings = build_pack(Path(path))
    except PackError as exc:
        report.errors.append(exc)
        return report
    report.name, report.version, report.prompts = pack.name, pack.version, len(pack.prompts)
    report.errors = problems[:MAX_REPORTED]
    report.more_errors = max(0, len(problems) - MAX_REPORTED)
    report.warnings = warnings
    return report


# --- helpers of the `packs` commands -------------------------------------------------


def discover_packs(project_dir: Path) -> list[tuple[str, Path]]:
    """(origin, folder) of the shipped packs and of the packs under `project_dir/prompts`."""
    found: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for origin, root in (("shipped", shipped_dir("prompts")), ("project", Path(project_dir) / "prompts")):
        for pack_file in sorted(root.glob(f"*/{PACK_FILE}")) if root.is_dir() else []:
            if pack_file.parent.resolve() not in seen:
                seen.add(pack_file.parent.resolve())
                found.append((origin, pack_file.parent))
    return found


def expand_references(references: list[str], project_dir: Path) -> tuple[list[str], list[str]]:
    """(pack references, skipped files) as `packs validate` takes them.

    A folder without pack.yaml that holds packs stands for each of them (`packs validate
    prompts`); a plain file other than pack.yaml is skipped, so that `prompts/*` works
    beside a README.
    """
    packs: list[str] = []
    skipped: list[str] = []
    for reference in references:
        candidate = Path(reference) if Path(reference).is_absolute() else Path(project_dir) / reference
        if candidate.is_file() and candidate.name != PACK_FILE:
            skipped.append(reference)
        elif candidate.is_dir() and not (candidate / PACK_FILE).exists() and any(candidate.glob(f"*/{PACK_FILE}")):
            packs.extend(str(Path(reference) / p.parent.name) for p in sorted(candidate.glob(f"*/{PACK_FILE}")))
        else:
            packs.append(reference)
    return packs, skipped
