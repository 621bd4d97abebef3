"""Policy files (design §6): the pydantic models, loading, matching a teacher, and the JSON Schema.

One YAML file per governing document (a weights licence or a provider's terms). The
models below are the single source of truth: `synthdistill/schemas/policy.schema.json`
is generated from them (`python -m synthdistill.policy.format` rewrites it).

Policies are looked up first in the project's own `policies/` folder (beside
distill.yaml), then among the shipped ones; a project file with the same `id`
overrides the shipped one.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from synthdistill.digests import file_sha256
from synthdistill.errors import PolicyFileError
from synthdistill.shipped import shipped_dir
from synthdistill.yaml_source import load_yaml, validate_document

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "policy.schema.json"

TrainingRule = Literal["allowed", "non-competing", "derivative", "forbidden"]


def _date_text(value: Any) -> Any:
    # YAML reads an unquoted 2024-07-23 as a date; the files may quote it or not.
    return value.isoformat() if isinstance(value, date) else value


DateText = Annotated[str, BeforeValidator(_date_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppliesTo(_Strict):
    """Which teachers a policy governs (either list may be empty)."""

    models: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Globs (fnmatch) on the normalised model name: lower-case, org dropped, '_' and ':' as '-', "
        "re-upload suffixes (-GGUF, -AWQ, -Q4_K_M, …) stripped; every path segment of the id is tried, so "
        "'SmolLM2-*' matches 'HuggingFaceTB/SmolLM2-135M-Instruct' and 'bartowski/SmolLM2-135M-Instruct-GGUF'. "
        "An api-terms policy's model globs count only without a base_url, for an id no weights licence matches",
    )
    not_models: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Globs on the normalised model name that this policy never matches, even when a `models` glob does "
        "(e.g. the sizes of a family that are under another licence)",
    )
    hosts: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Globs on the host of teacher.base_url (lower-case, no port, user-info or trailing dot); "
        "a host glob also covers its sub-domains ('claude.ai' covers 'api.claude.ai')",
    )


class Document(_Strict):
    """The governing document as it was read."""

    url: str = Field(min_length=1, description="Where the document is published")
    version: DateText = Field(
        min_length=1, description="Date of the version read (YYYY-MM-DD), or the licence's own version label"
    )
    retrieved: DateText = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="Date the document was read (YYYY-MM-DD)")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the document text, when kept")
    text: str | None = Field(
        None,
        pattern=r"^texts/[A-Za-z0-9._-]+$",
        description="A stored copy of the document (texts/<file> beside the policy), where its terms allow copies; "
        "quoted clauses are checked against it",
    )


class Licence(_Strict):
    spdx: str = Field(min_length=1, description="SPDX id, or LicenseRef-… for terms without one")
    name: str = Field(min_length=1, description="The licence's or terms' human-readable name")


class ObligationCheck(_Strict):
    """A machine-checkable obligation."""

    name_prefix: str = Field(min_length=1, description="The trained student's name must begin with this text")


class Obligation(_Strict):
    """A duty that passes to the dataset or the student; carried into the cards and the audit."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Stable id of the obligation (e.g. attribution)")
    text: str = Field(min_length=1, description="The duty in plain words, as the cards and the audit repeat it")
    check: ObligationCheck | None = Field(None, description="How the tool checks it, where it can; null = not checked")
    when: Literal["always", "distributing"] = Field(
        "always", description="distributing = only in force when use.distribute_student is true"
    )


class Conditions(_Strict):
    """Limits the user must watch; recorded, not checkable from distill.yaml."""

    max_monthly_active_users: int | None = Field(
        None,
        ge=1,
        description="Monthly active users above which the terms need another licence (recorded, not checked)",
    )
    stated: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Other conditions the document states, shown to the user (not checked)"
    )


class Permission(_Strict):
    """A written permission that sets a shipped policy aside, e.g. a provider's authorisation to distil."""

    granted_by: str = Field(min_length=1, description="Who granted it (a company, a named contact)")
    date: DateText = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="When it was granted (YYYY-MM-DD)")
    reference: str = Field(min_length=1, description="Where the document is kept: a contract number, a file, a URL")
    scope: str = Field("", description="What it permits, in its own words")


class Policy(_Strict):
    """One policy file (design §6)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="Stable id; teacher.policy may name it")
    title: str = Field(min_length=1, description="The document's title, e.g. 'Llama 3.1 Community License'")
    kind: Literal["weights-licence", "api-terms"] = Field(
        description="weights-licence: the licence of open weights; api-terms: the terms of a hosted API"
    )
    applies_to: AppliesTo = Field(default_factory=AppliesTo, description="Which teachers the policy matches")
    document: Document = Field(description="The governing document as it was read")
    licence: Licence = Field(description="The licence or terms, as an SPDX id and a name")
    outputs_for_training: TrainingRule = Field(
        description="allowed | non-competing (no models that compete with the provider) | derivative (a student is a "
        "derivative whose terms pass on) | forbidden"
    )
    commercial_use: Literal["allowed", "forbidden"] = Field(
        "allowed", description="forbidden = outputs may train models only when use.commercial is false"
    )
    clause: str = Field(min_length=1, description="The deciding clause, quoted briefly (e.g. '§1.b.v: \"…\"')")
    clause_kind: Literal["quote", "summary"] = Field(
        "quote",
        description="quote: every span in quotation marks is verbatim from the document; summary: the clause is "
        "written in other words",
    )
    obligations: list[Obligation] = Field(
        default_factory=list, description="Duties that pass to the datasets and the student (cards, audit)"
    )
    conditions: Conditions = Field(default_factory=Conditions, description="Limits recorded for the user to watch")
    requires_attestation: bool = Field(
        False, description="Refuse until use.attestation is given (unverified facts, or a clause that needs judgement)"
    )
    attestation_hint: str = Field("", description="What use.attestation should affirm, shown when the gate asks for it")
    notes: str = Field("", description="Anything else a reader should know (shown by `policy show`)")
    overrides: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Ids of policies this one sets aside for the teachers it matches (it matches where they do when its "
        "own applies_to is empty); needs a `permission`",
    )
    permission: Permission | None = Field(None, description="The written permission that justifies `overrides`")

    @model_validator(mode="after")
    def _overrides_need_permission(self) -> Policy:
        if self.overrides and self.permission is None:
            raise ValueError("overrides needs a permission: {granted_by, date, reference} of the written permission")
        if self.id in self.overrides:
            raise ValueError(f"policy '{self.id}' cannot override itself")
        return self

    @field_validator("obligations")
    @classmethod
    def _unique_obligation_ids(cls, value: list[Obligation]) -> list[Obligation]:
        seen: set[str] = set()
        for obligation in value:
            if obligation.id in seen:
                raise ValueError(f"obligation id '{obligation.id}' appears twice")
            seen.add(obligation.id)
        return value


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy plus where it came from: the file, its sha256, project or shipped."""

    policy: Policy
    path: Path
    sha256: str
    origin: Literal["project", "shipped"]

    @property
    def id(self) -> str:
        return self.policy.id


def load_policy_file(path: str | Path, origin: Literal["project", "shipped"] = "project") -> LoadedPolicy:
    """Read and validate one policy file; every error is a PolicyFileError with file and line."""
    loaded, _ = _read(Path(path), origin)
    return loaded


def _read(path: Path, origin: Literal["project", "shipped"]) -> tuple[LoadedPolicy, int | None]:
    doc = load_yaml(path, PolicyFileError)
    policy = validate_document(doc, Policy, PolicyFileError)
    _check_document_text(policy, path, doc.line_of(("document",)))
    digest = file_sha256(path)
    return LoadedPolicy(policy, path.resolve(), digest, origin), doc.line_of(("id",))


def document_text_path(loaded: LoadedPolicy) -> Path | None:
    """Where the stored copy of the policy's document is, or None when none is kept."""
    text = loaded.policy.document.text
    return loaded.path.parent / text if text else None


def _check_document_text(policy: Policy, path: Path, line: int | None) -> None:
    text = policy.document.text
    if not text:
        return
    stored = path.parent / text
    if not stored.is_file():
        raise PolicyFileError(f"document.text: {text} does not exist beside the policy", file=path, line=line)
    digest = file_sha256(stored)
    if policy.document.sha256 is not None and policy.document.sha256 != digest:
        raise PolicyFileError(
            f"document.sha256 is {policy.document.sha256[:12]}…, but {text} hashes to {digest[:12]}…",
            file=path,
            line=line,
        )


def _load_folder(folder: Path, origin: Literal["project", "shipped"]) -> list[LoadedPolicy]:
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    found: dict[str, LoadedPolicy] = {}
    for path in files:
        loaded, id_line = _read(path, origin)
        if loaded.id in found:
            other = found[loaded.id].path.name
            raise PolicyFileError(
                f"policy id '{loaded.id}' is also used by {other} in the same folder", file=path, line=id_line
            )
        found[loaded.id] = loaded
    return list(found.values())


def load_policy_folder(folder: str | Path, origin: Literal["project", "shipped"] = "project") -> list[LoadedPolicy]:
    """Every policy file (*.yaml, *.yml) of a folder, validated; ids must be unique within it."""
    return _load_folder(Path(folder), origin)


def project_policy_dir(project_dir: Path) -> Path:
    """Where a project keeps its own policies: `policies/` beside distill.yaml."""
    return Path(project_dir) / "policies"


def load_policies(project_dir: Path | None) -> list[LoadedPolicy]:
    """Project policies first, then the shipped ones they do not override (same `id`)."""
    shipped_folder = shipped_dir("policies")
    project: list[LoadedPolicy] = []
    if project_dir is not None:
        folder = project_policy_dir(project_dir)
        # Run from the source tree, the project's policies/ may be the shipped folder itself.
        if folder.is_dir() and folder.resolve() != shipped_folder.resolve():
            project = _load_folder(folder, "project")
    overridden = {p.id for p in project}
    shipped = [p for p in _load_folder(shipped_folder, "shipped") if p.id not in overridden]
    return sorted(project, key=lambda p: p.id) + sorted(shipped, key=lambda p: p.id)


def find_policy(policies: list[LoadedPolicy], policy_id: str) -> LoadedPolicy | None:
    """The policy with this id, or None."""
    return next((p for p in policies if p.id == policy_id), None)


def close_ids(policies: list[LoadedPolicy], text: str, n: int = 3) -> list[str]:
    """Policy ids that look like `text` (for "did you mean" hints)."""
    ids = [p.id for p in policies]
    return difflib.get_close_matches(text.lower(), ids, n=n, cutoff=0.5)


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of a policy file, generated from the `Policy` model."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Policy.model_json_schema()}


def render_policy_schema() -> str:
    """The text of `schemas/policy.schema.json` as it should be shipped."""
    return json.dumps(policy_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_policy_schema(path: Path = SCHEMA_PATH) -> Path:
    """Regenerate the shipped policy schema from the models."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_policy_schema(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_policy_schema())
