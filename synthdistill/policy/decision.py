"""Deciding (pure): the governing policies and the declared use → a `Decision`.

Each governing policy is decided against the declared `use` (`decide`). Of several
policies of one kind that match, the most restrictive for this use governs (never the
longest glob; on a tie, the one that needed attestation, then the more specific glob);
across kinds the most restrictive decides, and the obligations of every governing
policy are carried. Outcomes:

- `deny`: outputs may not train models (`forbidden`), or not for commercial use,
  or the student competes with the provider of `non-competing` terms;
- `needs-attestation`: the policy requires the user's judgement or rests on
  unverified facts, and `use.attestation` is missing (or not a sentence);
- `allow-with-obligations`: allowed, with duties that pass to the datasets and the
  student. A policy that required attestation and got it ends here too, with
  `attested: true` and an `attestation` obligation that records the statement;
- `allow`: allowed, nothing passes on.

`teacher.policy: <id>` may only choose among the policies whose globs name the teacher,
and never one less restrictive than the policy it would set aside; setting a policy
aside takes a project policy with `overrides:` and a written `permission`, which the
decision records (`overrides`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthdistill.config import UseConfig
from synthdistill.errors import ConfigError
from synthdistill.policy.decision_record import (
    ALLOWED,
    SEVERITY,
    Decision,
    DecisionObligation,
    GoverningPolicy,
    Outcome,
    OverrideRecord,
    SetAside,
)
from synthdistill.policy.format import LoadedPolicy, Obligation, Policy, close_ids, find_policy
from synthdistill.policy.matching import Match, Overridden, governing_matches, host_of, loose_matches, model_names
from synthdistill.policy.obligations import name_problem

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


MIN_WORDS = 4  # "yes", "ok" or "I agree" are not statements a reviewer can hold anyone to


def is_statement(attestation: str | None) -> bool:
    """True when `use.attestation` reads as a statement (a sentence), not a bare yes."""
    return len((attestation or "").split()) >= MIN_WORDS


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
    if policy.requires_attestation and not is_statement(use.attestation):
        why = (
            "the clause needs your judgement"
            if rule == "non-competing"
            else "it rests on facts that need your confirmation"
        )
        if (use.attestation or "").strip():
            why += f" ({use.attestation.strip()!r} is not a statement: write a sentence of at least {MIN_WORDS} words)"
        return Verdict("needs-attestation", f"{name} needs use.attestation: {why}", obligations)
    allows = f"{name} allows training on the teacher's outputs"
    if policy.requires_attestation:
        return Verdict("allow-with-obligations", f"{allows} on your attestation", obligations, attested=True)
    if rule == "derivative":
        return Verdict(
            "allow-with-obligations", f"{allows}; the student is a derivative and its terms pass on", obligations
        )
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
        f"if you hold a written permission (e.g. a separate licence or the provider's authorisation), add a project "
        f"policy to {project_hint} with `overrides: [{policy.id}]` and `permission: {{granted_by, date, reference}}`"
    )
    return steps


def _governing(match: Match, verdict: Verdict) -> GoverningPolicy:
    loaded = match.loaded
    return GoverningPolicy(
        policy_id=loaded.id,
        title=loaded.policy.title,
        outcome=verdict.outcome,
        clause=loaded.policy.clause,
        policy_file=f"policies/{loaded.path.name}",
        policy_sha256=loaded.sha256,
        origin=loaded.origin,
        matched_by=match.matched_by,
    )


def _name_warnings(obligations: list[DecisionObligation], student_name: str | None) -> list[str]:
    if student_name is None:  # no student configured yet: nothing to check
        return []
    problems = (name_problem(o, student_name) for o in obligations)
    return [f"{p}; `train` will refuse it" for p in problems if p]


def _strictness(mv: tuple[Match, Verdict]) -> tuple[int, bool, int]:
    match, verdict = mv
    return SEVERITY[verdict.outcome], verdict.attested, match.specificity


def _layer(match: Match) -> str:
    """What a match governs as: the weights, the route it is reached through (host), or the provider (API name)."""
    if match.loaded.policy.kind == "weights-licence":
        return "weights-licence"
    return "api-terms:route" if "host" in match.matched_by else "api-terms:provider"


def _strictest_per_layer(verdicts: list[tuple[Match, Verdict]]) -> tuple[list[tuple[Match, Verdict]], list[SetAside]]:
    """In each layer (weights licence; the terms of the host reached; the terms of an API-only model's provider)
    the match most restrictive for this use governs; the others are set aside, with why."""
    governing, shadowed = [], []
    for layer in ("weights-licence", "api-terms:route", "api-terms:provider"):
        of_layer = [mv for mv in verdicts if _layer(mv[0]) == layer]
        if not of_layer:
            continue
        strictest = max(of_layer, key=_strictness)
        governing.append(strictest)
        shadowed += [
            SetAside(
                policy_id=m.loaded.id,
                why=f"also matches; '{strictest[0].loaded.id}' is at least as restrictive "
                f"for this use ({v.outcome} vs {strictest[1].outcome})",
            )
            for m, v in of_layer
            if m is not strictest[0]
        ]
    return governing, shadowed


def _choose(
    chosen_id: str,
    policies: list[LoadedPolicy],
    model: str,
    hosts: list[str],
    use: UseConfig,
    governing: list[tuple[Match, Verdict]],
) -> tuple[Match, Verdict, str]:
    """The policy `teacher.policy` names, and the layer it governs in.

    It must name the teacher, and must not be looser than the policy it sets aside in its layer.
    """
    loose = {m.loaded.id: m for m in loose_matches(policies, model, hosts)}
    loose.update({m.loaded.id: m for m, _ in governing})
    if chosen_id not in loose:
        if find_policy(policies, chosen_id) is None:
            close = close_ids(policies, chosen_id)
            hint = (
                f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see `synthdistill policy list`"
            )
            raise ConfigError(f"teacher.policy: no policy has id '{chosen_id}'{hint}")
        names = ", ".join(sorted(loose)) or "none"
        raise ConfigError(
            f"teacher.policy: policy '{chosen_id}' does not match teacher '{model}'"
            + (f" at {', '.join(hosts)}" if hosts else "")
            + f" (policies that match it: {names}); to apply other terms, add a project policy whose applies_to "
            "names this teacher, with `overrides:` and a `permission` where it sets shipped terms aside"
        )
    layer = _layer(loose[chosen_id])
    match = Match(loose[chosen_id].loaded, "policy-id", loose[chosen_id].specificity)
    verdict = decide(match.loaded.policy, use)
    for other, other_verdict in governing:
        looser = SEVERITY[verdict.outcome] < SEVERITY[other_verdict.outcome]
        if _layer(other) == layer and looser:
            raise ConfigError(
                f"teacher.policy: '{chosen_id}' would set aside '{other.loaded.id}', which also governs teacher "
                f"'{model}' and is more restrictive for this use ({verdict.outcome} vs {other_verdict.outcome}); "
                f"to set '{other.loaded.id}' aside, add a project policy with `overrides: [{other.loaded.id}]` and "
                "the `permission` you hold"
            )
    return match, verdict, layer


def _unmatched(model: str, hosts: list[str], project_hint: str, common: dict[str, Any]) -> Decision:
    where = f" at {', '.join(hosts)}" if hosts else ""
    return Decision(
        outcome="deny",
        reason=f"no policy matches teacher '{model}'{where}",
        how_to_proceed=[
            f"add a policy file for the teacher's licence or terms to {project_hint} "
            "(copy one shown by `synthdistill policy show smollm2`)",
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


def _conditions(governing: list[tuple[Match, Verdict]]) -> dict[str, Any]:
    """The conditions of every governing policy: the lowest user ceiling, every stated condition."""
    ceilings = [c for m, _ in governing if (c := m.loaded.policy.conditions.max_monthly_active_users)]
    stated = [c for m, _ in governing for c in m.loaded.policy.conditions.stated]
    return {
        **({"max_monthly_active_users": min(ceilings)} if ceilings else {}),
        **({"stated": list(dict.fromkeys(stated))} if stated else {}),
    }


def _override_records(set_aside: list[Overridden]) -> list[OverrideRecord]:
    records: dict[str, OverrideRecord] = {}
    for item in set_aside:
        by = item.by
        record = records.setdefault(
            by.id,
            OverrideRecord(
                policy_id=by.id,
                overridden=[],
                permission=by.policy.permission.model_dump() if by.policy.permission else {},
                policy_file=f"policies/{by.path.name}",
                policy_sha256=by.sha256,
            ),
        )
        record.overridden.append(item.policy.id)
    return list(records.values())


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
        use=use.model_dump(),
        teacher_model=teacher_model,
        teacher_names=model_names(teacher_model),
        teacher_host=hosts[0] if hosts else None,
        teacher_hosts=hosts,
        attestation=use.attestation,
        policy_choice=policy_choice,
    )
    matches, overridden = governing_matches(policies, teacher_model, hosts)
    governing, shadowed = _strictest_per_layer([(m, decide(m.loaded.policy, use)) for m in matches])
    if policy_choice != "auto":
        match, verdict, layer = _choose(policy_choice, policies, teacher_model, hosts, use, governing)
        replaced = [m.loaded.id for m, _ in governing if _layer(m) == layer and m.loaded.id != policy_choice]
        shadowed += [
            SetAside(policy_id=i, why=f"teacher.policy chose '{policy_choice}', as restrictive") for i in replaced
        ]
        governing = [mv for mv in governing if _layer(mv[0]) != layer and mv[0].loaded.id != policy_choice]
        governing.append((match, verdict))
    set_aside = shadowed + [
        SetAside(
            policy_id=o.policy.id,
            why=f"overridden by project policy '{o.by.id}' (permission from "
            f"{o.by.policy.permission.granted_by}, {o.by.policy.permission.date})",
        )
        for o in overridden
        if o.by.policy.permission
    ]
    common.update(set_aside=set_aside, overrides=_override_records(overridden))
    if not governing:
        return _unmatched(teacher_model, hosts, project_hint, common)
    # The most restrictive decides; on a tie one that needed attestation, then the weights licence (listed first).
    deciding, verdict = max(governing, key=lambda mv: (SEVERITY[mv[1].outcome], mv[1].attested))
    allowed = verdict.outcome in ALLOWED
    obligations = _carried(governing, use)
    policy = deciding.loaded.policy
    return Decision(
        outcome=verdict.outcome,
        reason=verdict.reason,
        how_to_proceed=[] if allowed else _how_to_proceed(policy, verdict, project_hint),
        attested=allowed and any(v.attested for _, v in governing),
        policy_id=policy.id,
        policy_title=policy.title,
        policy_kind=policy.kind,
        clause=policy.clause,
        clause_kind=policy.clause_kind,
        outputs_for_training=policy.outputs_for_training,
        obligations=obligations,
        conditions=_conditions(governing),
        policy_file=f"policies/{deciding.loaded.path.name}",
        policy_sha256=deciding.loaded.sha256,
        origin=deciding.loaded.origin,
        matched_by=deciding.matched_by,
        also_governed_by=[_governing(m, v) for m, v in governing if m is not deciding],
        requires_attestation=any(m.loaded.policy.requires_attestation for m, _ in governing),
        licence=policy.licence.model_dump(),
        document=policy.document.model_dump(),
        notes=policy.notes,
        warnings=_name_warnings(obligations, student_name) if allowed else [],
        **common,
    )


def refusal_message(
    decision: Decision, lead: str | None = None, nothing_done: str = "Nothing was sent to the teacher."
) -> str:
    """Why the gate refused and how to proceed, for the user."""
    lead = lead or f"the policy gate refused teacher '{decision.teacher_model}'"
    lines = [f"{lead}: {decision.reason}."]
    if decision.clause:
        kind = ", in summary" if decision.clause_kind == "summary" else ""
        lines.append(f"Deciding clause ({decision.policy_file}, {decision.origin}{kind}): {decision.clause}")
    if decision.notes and decision.outcome == "needs-attestation":
        lines.append(f"Notes: {decision.notes.strip()}")
    lines.append(f"{nothing_done} To proceed:")
    lines.extend(f"  - {step}" for step in decision.how_to_proceed)
    return "\n".join(lines)
