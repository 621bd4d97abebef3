"""The gate's decision as a record (pure data): what was decided, why, and what passes on.

Written to harvest/decision.json by the gate, read by every later stage, the cards and the audit.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.config import UseConfig

Outcome = Literal["allow", "allow-with-obligations", "needs-attestation", "deny"]
SEVERITY: dict[str, int] = {"allow": 0, "allow-with-obligations": 1, "needs-attestation": 2, "deny": 3}
ALLOWED = ("allow", "allow-with-obligations")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionObligation(_Strict):
    """An obligation in force for this run, with the policy it comes from."""

    id: str
    text: str
    check: dict[str, Any] | None = None
    policy_id: str

    @property
    def name_prefix(self) -> str | None:
        """The text the student's name must begin with, when the obligation is checkable."""
        return (self.check or {}).get("name_prefix")


class GoverningPolicy(_Strict):
    """A policy that governs the teacher besides the deciding one."""

    policy_id: str
    title: str
    outcome: Outcome
    clause: str
    policy_file: str
    policy_sha256: str
    origin: Literal["project", "shipped"]
    matched_by: str


class SetAside(_Strict):
    """A policy that matched the teacher but does not decide: overridden, or shadowed by a stricter one of its kind."""

    policy_id: str
    why: str


class OverrideRecord(_Strict):
    """A project policy that set shipped terms aside, and the written permission it rests on."""

    policy_id: str
    overridden: list[str]
    permission: dict[str, Any]
    policy_file: str
    policy_sha256: str


class AnsweringModel(_Strict):
    """A model the server answered as, other than the one asked for, and the gate's decision on it."""

    model: str
    outcome: Outcome
    policy_ids: list[str] = Field(default_factory=list)
    reason: str


class EmbeddingModelDecision(_Strict):
    """The embedding model of `harvest.embeddings` where it is not the teacher at its hosts: the gate's own decision."""

    model: str
    hosts: list[str] = Field(default_factory=list)
    outcome: Outcome
    policy_ids: list[str] = Field(default_factory=list)
    reason: str


class Decision(_Strict):
    """What the gate decided, why, and what passes on; written to harvest/decision.json."""

    outcome: Outcome
    reason: str = Field(description="One sentence: why this outcome")
    how_to_proceed: list[str] = Field(default_factory=list, description="Ways forward when refused")
    attested: bool = False
    policy_id: str | None = None
    policy_title: str | None = None
    policy_kind: str | None = None
    clause: str | None = None
    clause_kind: str | None = None
    outputs_for_training: str | None = None
    obligations: list[DecisionObligation] = Field(default_factory=list)
    conditions: dict[str, Any] = Field(default_factory=dict)
    policy_file: str | None = Field(None, description="policies/<file> under the project or the tool (see origin)")
    policy_sha256: str | None = None
    origin: Literal["project", "shipped"] | None = None
    matched_by: str | None = Field(None, description="policy-id | model | host | model+host | overrides")
    policy_choice: str = Field("auto", description="teacher.policy as configured when the gate decided")
    also_governed_by: list[GoverningPolicy] = Field(default_factory=list)
    set_aside: list[SetAside] = Field(default_factory=list)
    overrides: list[OverrideRecord] = Field(default_factory=list)
    requires_attestation: bool = False
    attestation: str | None = None
    use: dict[str, Any] = Field(description="The use the gate decided for (the gated use)")
    teacher_model: str
    teacher_names: list[str] = Field(default_factory=list, description="The model id's names as matching read them")
    teacher_host: str | None = None
    teacher_hosts: list[str] = Field(default_factory=list)
    answering_models: list[AnsweringModel] = Field(default_factory=list)
    embedding_model: EmbeddingModelDecision | None = Field(
        None, description="harvest.embeddings' model, decided on its own (null: none, or the teacher itself)"
    )
    licence: dict[str, str] | None = None
    document: dict[str, Any] | None = None
    notes: str = ""
    warnings: list[str] = Field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.outcome in ALLOWED

    @property
    def gated_use(self) -> UseConfig:
        return UseConfig.model_validate(self.use)
