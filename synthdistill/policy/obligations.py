"""The one obligation checker: train, the dataset and model cards and the audit all judge duties here.

A duty with a `check` (today: a name prefix) is judged against the student's name; the
others are listed for the user to keep. Whether a duty binds at all was settled when the
gate decided (`when: distributing` duties bind only a distributed student; duties of
licences that cover a model "made available" bind a hosted one too, so they are `always`).
"""

from __future__ import annotations

from synthdistill.errors import ObligationViolation
from synthdistill.policy.decision_record import Decision, DecisionObligation


def name_problem(obligation: DecisionObligation, student_name: str | None) -> str | None:
    """Why `student_name` breaks a name-prefix obligation, or None when it keeps it (or has no check)."""
    prefix = obligation.name_prefix
    if not prefix:
        return None
    source = obligation.policy_id or "the teacher's policy"
    if not student_name:
        return f"policy '{source}' requires the student's name to begin with {prefix!r} ({obligation.text}); set student.name"
    # A hub id (org/name) is judged by its name part.
    if student_name.strip().rstrip("/").rsplit("/", 1)[-1].startswith(prefix):
        return None
    return f"student name {student_name!r} must begin with {prefix!r}: policy '{source}' obliges it ({obligation.text})"


def obligation_problems(decision: Decision, student_name: str | None) -> list[str]:
    """Why the student breaks checkable obligations of the decision (empty when it keeps them all)."""
    return [problem for o in decision.obligations if (problem := name_problem(o, student_name))]


def enforce_obligations(decision: Decision, student_name: str | None) -> None:
    """Raise ObligationViolation (exit 3) when the student breaks a checkable obligation of the decision."""
    problems = obligation_problems(decision, student_name)
    if problems:
        advice = ". Rename the student (student.name in distill.yaml) and train again."
        raise ObligationViolation("; ".join(problems) + advice)


def _yes(value: object) -> str:
    return "yes" if value else "no"


def override_lines(decision: Decision) -> list[str]:
    """One Markdown line per override: shipped terms set aside on a written permission (shown first in cards)."""
    return [
        f"- **Override**: project policy `{record.policy_id}` sets aside {', '.join(f'`{i}`' for i in record.overridden)} "
        f"on a written permission from {record.permission.get('granted_by')} ({record.permission.get('date')}, "
        f"reference {record.permission.get('reference')})"
        for record in decision.overrides
    ]


def terms_lines(decision: Decision) -> list[str]:
    """The teacher's terms as Markdown bullets: teacher, overrides first, policy, decision, clause, use."""
    teacher = f"`{decision.teacher_model}`"
    if decision.teacher_hosts:
        teacher += f" at {', '.join(decision.teacher_hosts)}"
    lines = [f"- Teacher: {teacher}", *override_lines(decision)]
    if decision.policy_id:
        file = f"{decision.origin or ''} file {decision.policy_file or ''}".strip()
        sha = (decision.policy_sha256 or "")[:12]
        lines.append(f"- Policy: `{decision.policy_id}` — {decision.policy_title or ''} ({file}, sha256 {sha}…)")
    lines.append(f"- Decision: **{decision.outcome}** — {decision.reason}")
    if decision.clause:
        kind = " (summary)" if decision.clause_kind == "summary" else ""
        lines.append(f"- Deciding clause{kind}: {decision.clause}")
    if document := decision.document:
        version = f"version {document.get('version')}, retrieved {document.get('retrieved')}"
        lines.append(f"- Document: {document.get('url')} ({version})")
    if licence := decision.licence:
        lines.append(f"- Licence: {licence.get('name')} (`{licence.get('spdx')}`)")
    for other in decision.also_governed_by:
        lines.append(f"- Also governed by: `{other.policy_id}` — {other.title} ({other.outcome})")
    for answered in decision.answering_models:
        lines.append(
            f"- Server answered as `{answered.model}`: {answered.outcome} ({', '.join(answered.policy_ids) or 'no policy'})"
        )
    if embedding := decision.embedding_model:
        at = f" at {', '.join(embedding.hosts)}" if embedding.hosts else ""
        lines.append(
            f"- Embedding model `{embedding.model}`{at}: {embedding.outcome} ({', '.join(embedding.policy_ids) or 'no policy'})"
        )
    use = decision.gated_use
    lines.append(
        f"- Gated use: commercial {_yes(use.commercial)}, "
        f"distribute student {_yes(use.distribute_student)}, "
        f"competes with teacher provider {_yes(use.competes_with_teacher_provider)}"
    )
    if decision.attestation:
        lines.append(f'- Attestation: "{decision.attestation}"')
    for key, value in (decision.conditions or {}).items():
        if isinstance(value, list):
            lines.extend(f"- Condition: {item}" for item in value)
            continue
        shown = f"{value:,}" if isinstance(value, int) else value
        lines.append(f"- Condition: {key.replace('_', ' ')} = {shown}")
    return lines


def obligations_markdown(decision: Decision) -> str:
    """The "## Teacher terms" section of dataset and model cards."""
    lines = ["## Teacher terms", "", *terms_lines(decision), "", "### Obligations", ""]
    if not decision.obligations:
        lines.append("None pass on to this dataset or model.")
    for obligation in decision.obligations:
        prefix = obligation.name_prefix
        checked = f' (checked: name begins with "{prefix}")' if prefix else ""
        lines.append(f"- **{obligation.id}** ({obligation.policy_id}): {obligation.text}{checked}")
    return "\n".join(lines) + "\n"
