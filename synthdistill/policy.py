"""The licence/terms gate (design §6): match a teacher to its policies, decide, enforce.

    load_policies (policy_format, I/O) ─▶ evaluate (pure) ─▶ Decision ─▶ gate raises on refusal

Matching. A policy matches a teacher when one of its `models` globs matches the model
id (or the id's last path segment), or one of its `hosts` globs matches the host of
a `teacher.base_url`. A teacher is governed by at most one weights licence and one
provider's terms (a Llama model served by Meta's API is bound by both): of each kind
the best match wins — a project policy before a shipped one, then a host match before
a model-only match, then the glob with the most literal characters (so
`Qwen2.5-72B*` beats `Qwen2.5-*`). `teacher.policy: <id>` names the one policy instead.

Decision. Each governing policy is decided against the declared `use`
(`decide`, pure); the most restrictive decides, and the obligations of all of them
are carried. Outcomes:

- `deny`: outputs may not train models (`forbidden`), or not for commercial use,
  or the student competes with the provider of `non-competing` terms;
- `needs-attestation`: the policy requires the user's judgement or rests on
  unverified facts, and `use.attestation` is empty;
- `allow-with-obligations`: allowed, with duties that pass to the datasets and the
  student. A policy that required attestation and got it ends here too, with
  `attested: true` and an `attestation` obligation that records the statement;
- `allow`: allowed, nothing passes on.

The gate raises `PolicyDenied` (exit 3) for `deny`, `needs-attestation` and a
teacher no policy matches, with the reason and how to proceed; it returns the
`Decision` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthdistill.config import DistillConfig, UseConfig
from synthdistill.errors import ConfigError, ObligationViolation, PolicyDenied
from synthdistill.policy_format import (
    LoadedPolicy,
    Match,
    Obligation,
    Policy,
    close_ids,
    find_policy,
    governing_matches,
    host_of,
    load_policies,
)

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
    outputs_for_training: str | None = None
    obligations: list[DecisionObligation] = Field(default_factory=list)
    conditions: dict[str, Any] = Field(default_factory=dict)
    policy_file: str | None = Field(None, description="policies/<file> under the project or the tool (see origin)")
    policy_sha256: str | None = None
    origin: Literal["project", "shipped"] | None = None
    matched_by: str | None = Field(None, description="policy-id | model | host | model+host")
    also_governed_by: list[GoverningPolicy] = Field(default_factory=list)
    requires_attestation: bool = False
    attestation: str | None = None
    use: dict[str, Any]
    teacher_model: str
    teacher_host: str | None = None
    teacher_hosts: list[str] = Field(default_factory=list)
    licence: dict[str, str] | None = None
    document: dict[str, Any] | None = None
    notes: str = ""
    warnings: list[str] = Field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.outcome in ALLOWED


# -- deciding (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    obligations: list[Obligation]
    attested: bool = False


def obligations_in_force(policy: Policy, use: UseConfig) -> list[Obligation]:
    """The policy's obligations that apply to this use (some only bind a distributed student)."""
    return [o for o in policy.obligations if o.when == "always" or use.distribute_student]


def decide(policy: Policy, use: UseConfig) -> Verdict:
    """Decide one policy against the declared use. Pure."""
    name = f"policy '{policy.id}' ({policy.title})"
    rule = policy.outputs_for_training
    if rule == "forbidden":
        return Verdict("deny", f"{name} forbids using the teacher's outputs to train other models", [])
    if policy.commercial_use == "forbidden" and use.commercial:
        why = "allows training on the outputs for non-commercial use only, and use.commercial is true"
        return Verdict("deny", f"{name} {why}", [])
    if rule == "non-competing" and use.competes_with_teacher_provider:
        why = "forbids training models that compete with the provider, and use.competes_with_teacher_provider is true"
        return Verdict("deny", f"{name} {why}", [])
    obligations = obligations_in_force(policy, use)
    if policy.requires_attestation and not (use.attestation or "").strip():
        why = "the clause needs your judgement" if rule == "non-competing" else "it rests on facts that need your confirmation"
        return Verdict("needs-attestation", f"{name} needs use.attestation: {why}", obligations)
    allows = f"{name} allows training on the teacher's outputs"
    if policy.requires_attestation:
        return Verdict("allow-with-obligations", f"{allows} on your attestation", obligations, attested=True)
    if rule == "derivative":
        return Verdict("allow-with-obligations", f"{allows}; the student is a derivative and its terms pass on", obligations)
    if obligations:
        return Verdict("allow-with-obligations", f"{allows}, with obligations that pass on", obligations)
    return Verdict("allow", allows, [])


def _how_to_proceed(policy: Policy, verdict: Verdict, project_hint: str) -> list[str]:
    if verdict.outcome == "needs-attestation":
        hint = policy.attestation_hint or "a sentence saying that your use complies with the clause above"
        return [
            f"if your use complies, set use.attestation in distill.yaml to {hint} (it is recorded in the run and the audit)",
            "or change `use` / choose another teacher (`synthdistill policy list`)",
        ]
    steps = []
    if policy.commercial_use == "forbidden" and policy.outputs_for_training != "forbidden":
        steps.append("for research only, set use.commercial: false")
    if policy.outputs_for_training == "non-competing":
        steps.append(
            "if the student does not compete with the provider, set use.competes_with_teacher_provider: false "
            "and give use.attestation"
        )
    steps.append("choose a teacher whose terms permit this use (`synthdistill policy list`)")
    steps.append(
        f"if you hold other terms (e.g. a separate licence), record them in a project policy with id "
        f"'{policy.id}' in {project_hint}"
    )
    return steps


def _governing(match: Match, verdict: Verdict) -> GoverningPolicy:
    loaded = match.loaded
    return GoverningPolicy(
        policy_id=loaded.id, title=loaded.policy.title, outcome=verdict.outcome, clause=loaded.policy.clause,
        policy_file=f"policies/{loaded.path.name}", policy_sha256=loaded.sha256, origin=loaded.origin,
        matched_by=match.matched_by,
    )


def _name_warnings(obligations: list[DecisionObligation], student_name: str | None) -> list[str]:
    if student_name is None:  # no student configured yet: nothing to check
        return []
    problems = (name_problem(o.model_dump(), student_name) for o in obligations)
    return [f"{p}; `train` will refuse it" for p in problems if p]


def _select(policies: list[LoadedPolicy], choice: str, model: str, hosts: list[str]) -> list[Match]:
    """The governing policies: the one `teacher.policy` names, or the best matches."""
    if choice == "auto":
        return governing_matches(policies, model, hosts)
    chosen = find_policy(policies, choice)
    if chosen is None:
        close = close_ids(policies, choice)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see `synthdistill policy list`"
        raise ConfigError(f"teacher.policy: no policy has id '{choice}'{hint}")
    return [Match(chosen, "policy-id", (1, 1, 0))]


def _unmatched(model: str, hosts: list[str], project_hint: str, common: dict[str, Any]) -> Decision:
    where = f" at {', '.join(hosts)}" if hosts else ""
    return Decision(
        outcome="deny", reason=f"no policy matches teacher '{model}'{where}",
        how_to_proceed=[
            f"add a policy file for the teacher's licence or terms to {project_hint} "
            "(copy one shown by `synthdistill policy show smollm2`)",
            "or set teacher.policy to the id of the policy that governs it (`synthdistill policy list`)",
            "then declare your `use` (commercial, distribute_student, competes_with_teacher_provider) "
            "and, where asked, use.attestation",
        ],
        **common,
    )


def _carried(verdicts: list[tuple[Match, Verdict]], use: UseConfig) -> list[DecisionObligation]:
    """The obligations of every governing policy, plus the attestation when one was needed."""
    carried = [
        DecisionObligation(id=o.id, text=o.text, check=o.check.model_dump() if o.check else None, policy_id=m.loaded.id)
        for m, v in verdicts
        for o in v.obligations
    ]
    attesting = [m.loaded.id for m, v in verdicts if v.attested]
    if attesting:
        text = f"Outputs are used on the user's attestation: {use.attestation!r}"
        carried.append(DecisionObligation(id="attestation", text=text, policy_id=attesting[0]))
    return carried


def evaluate(
    policies: list[LoadedPolicy],
    teacher_model: str,
    base_urls: list[str],
    use: UseConfig,
    policy_choice: str = "auto",
    student_name: str | None = None,
    project_hint: str = "the project's policies/ folder",
) -> Decision:
    """The decision for a teacher and a declared use, refusals included. Pure (no I/O)."""
    hosts = sorted({h for h in (host_of(u) for u in base_urls) if h})
    common: dict[str, Any] = dict(
        use=use.model_dump(), teacher_model=teacher_model, teacher_host=hosts[0] if hosts else None,
        teacher_hosts=hosts, attestation=use.attestation,
    )
    matches = _select(policies, policy_choice, teacher_model, hosts)
    if not matches:
        return _unmatched(teacher_model, hosts, project_hint, common)
    verdicts = [(m, decide(m.loaded.policy, use)) for m in matches]
    # The most restrictive decides; on a tie one that needed attestation, then the weights licence (listed first).
    deciding, verdict = max(verdicts, key=lambda mv: (SEVERITY[mv[1].outcome], mv[1].attested))
    allowed = verdict.outcome in ALLOWED
    obligations = _carried(verdicts, use)
    policy = deciding.loaded.policy
    return Decision(
        outcome=verdict.outcome, reason=verdict.reason,
        how_to_proceed=[] if allowed else _how_to_proceed(policy, verdict, project_hint),
        attested=allowed and any(v.attested for _, v in verdicts),
        policy_id=policy.id, policy_title=policy.title, policy_kind=policy.kind, clause=policy.clause,
        outputs_for_training=policy.outputs_for_training, obligations=obligations,
        conditions=policy.conditions.model_dump(exclude_none=True),
        policy_file=f"policies/{deciding.loaded.path.name}", policy_sha256=deciding.loaded.sha256,
        origin=deciding.loaded.origin, matched_by=deciding.matched_by,
        also_governed_by=[_governing(m, v) for m, v in verdicts if m is not deciding],
        requires_attestation=any(m.loaded.policy.requires_attestation for m in matches),
        licence=policy.licence.model_dump(), document=policy.document.model_dump(), notes=policy.notes,
        warnings=_name_warnings(obligations, student_name) if allowed else [],
        **common,
    )


def refusal_message(decision: Decision) -> str:
    """Why the gate refused and how to proceed, for the user."""
    lines = [f"the policy gate refused teacher '{decision.teacher_model}': {decision.reason}."]
    if decision.clause:
        lines.append(f"Deciding clause ({decision.policy_file}, {decision.origin}): {decision.clause}")
    if decision.notes and decision.outcome == "needs-attestation":
        lines.append(f"Notes: {decision.notes.strip()}")
    lines.append("Nothing was sent to the teacher. To proceed:")
    lines.extend(f"  - {step}" for step in decision.how_to_proceed)
    return "\n".join(lines)


# -- the gate and the obligations (I/O at the edges) ---------------------------


def _config_line(config: DistillConfig, loc: tuple) -> int | None:
    from synthdistill.yaml_source import load_yaml

    try:
        return load_yaml(config.path, ConfigError).line_of(loc)
    except ConfigError:
        return None


def gate(config: DistillConfig) -> Decision:
    """Decide before the first request; raise PolicyDenied (exit 3) unless the teacher is allowed."""
    policies = load_policies(config.project_dir)
    # The name `train` will give the student (student.name, else the run name); None = no student yet.
    student_name = (config.student.name or config.name) if config.student else None
    try:
        decision = evaluate(
            policies, config.teacher.model, config.teacher.base_urls, config.use, config.teacher.policy,
            student_name=student_name, project_hint=str(config.project_dir / "policies"),
        )
    except ConfigError as exc:
        raise ConfigError(exc.message, file=config.path, line=_config_line(config, ("teacher", "policy"))) from None
    if not decision.allowed:
        raise PolicyDenied(refusal_message(decision))
    return decision


def name_problem(obligation: dict[str, Any], student_name: str | None) -> str | None:
    """Why `student_name` breaks a name-prefix obligation, or None when it keeps it (or has no check)."""
    prefix = (obligation.get("check") or {}).get("name_prefix")
    if not prefix:
        return None
    source = obligation.get("policy_id") or "the teacher's policy"
    text = obligation.get("text", "")
    if not student_name:
        return f"policy '{source}' requires the student's name to begin with {prefix!r} ({text}); set student.name"
    # A hub id (org/name) is judged by its name part.
    if student_name.rstrip("/").rsplit("/", 1)[-1].startswith(prefix):
        return None
    return f"student name {student_name!r} must begin with {prefix!r}: policy '{source}' obliges it ({text})"


def enforce_obligations(decision: dict[str, Any], student_name: str | None) -> None:
    """Raise ObligationViolation (exit 3) when the student breaks a checkable obligation of the decision."""
    problems = [p for p in (name_problem(o, student_name) for o in decision.get("obligations", [])) if p]
    if problems:
        advice = ". Rename the student (student.name in distill.yaml) and train again."
        raise ObligationViolation("; ".join(problems) + advice)


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def _terms_lines(decision: dict[str, Any]) -> list[str]:
    teacher = f"`{decision.get('teacher_model', 'unknown')}`"
    if decision.get("teacher_hosts"):
        teacher += f" at {', '.join(decision['teacher_hosts'])}"
    lines = [f"- Teacher: {teacher}"]
    if decision.get("policy_id"):
        file = f"{decision.get('origin', '')} file {decision.get('policy_file', '')}".strip()
        sha = (decision.get("policy_sha256") or "")[:12]
        lines.append(f"- Policy: `{decision['policy_id']}` — {decision.get('policy_title', '')} ({file}, sha256 {sha}…)")
    lines.append(f"- Decision: **{decision.get('outcome', 'unknown')}** — {decision.get('reason', '')}")
    if decision.get("clause"):
        lines.append(f"- Deciding clause: {decision['clause']}")
    if document := decision.get("document"):
        version = f"version {document.get('version')}, retrieved {document.get('retrieved')}"
        lines.append(f"- Document: {document.get('url')} ({version})")
    if licence := decision.get("licence"):
        lines.append(f"- Licence: {licence.get('name')} (`{licence.get('spdx')}`)")
    for other in decision.get("also_governed_by", []):
        lines.append(f"- Also governed by: `{other['policy_id']}` — {other['title']} ({other['outcome']})")
    if use := decision.get("use"):
        lines.append(
            f"- Declared use: commercial {_yes(use.get('commercial'))}, "
            f"distribute student {_yes(use.get('distribute_student'))}, "
            f"competes with teacher provider {_yes(use.get('competes_with_teacher_provider'))}"
        )
    if decision.get("attestation"):
        lines.append(f"- Attestation: \"{decision['attestation']}\"")
    for key, value in (decision.get("conditions") or {}).items():
        shown = f"{value:,}" if isinstance(value, int) else value
        lines.append(f"- Condition: {key.replace('_', ' ')} = {shown}")
    return lines


def obligations_markdown(decision: dict[str, Any]) -> str:
    """The "## Teacher terms" section of dataset and model cards, from a decision dict."""
    lines = ["## Teacher terms", "", *_terms_lines(decision), "", "### Obligations", ""]
    obligations = decision.get("obligations") or []
    if not obligations:
        lines.append("None pass on to this dataset or model.")
    for obligation in obligations:
        prefix = (obligation.get("check") or {}).get("name_prefix")
        checked = f' (checked: name begins with "{prefix}")' if prefix else ""
        lines.append(f"- **{obligation['id']}** ({obligation.get('policy_id', '')}): {obligation['text']}{checked}")
    return "\n".join(lines) + "\n"
