"""`synthdistill policy list | show ID | check --model M | validate PATH...`: thin wiring over `synthdistill.policy`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from synthdistill.cli import render
from synthdistill.cli.stages import SetOption
from synthdistill.config import UseConfig, load_config
from synthdistill.errors import InputError, PolicyDenied, PolicyFileError
from synthdistill.policy import evaluate
from synthdistill.policy.format import close_ids, find_policy, load_policies, load_policy_file, load_policy_folder

policy_app = typer.Typer(help="List, show and check teacher licence/terms policies.", no_args_is_help=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("-c", "--config", help="distill.yaml: its policies/ folder is searched first (default: ./policies)."),
]


def _project_dir(config: Path | None) -> Path:
    return config.resolve().parent if config else Path.cwd()


def _policies(config: Path | None):
    return load_policies(_project_dir(config))


def _lines(lines: list[str]) -> None:
    for line in lines:
        render.result(escape(line))


@policy_app.command("list")
def list_policies(config: ConfigOpt = None) -> None:
    """Every policy: the project's own (./policies or beside -c) first, then the shipped ones."""
    entries = [
        {
            "id": p.id,
            "title": p.policy.title,
            "kind": p.policy.kind,
            "outputs_for_training": p.policy.outputs_for_training,
            "commercial_use": p.policy.commercial_use,
            "requires_attestation": p.policy.requires_attestation,
            "origin": p.origin,
            "file": str(p.path),
            "sha256": p.sha256,
        }
        for p in _policies(config)
    ]
    render.emit_json({"policies": entries})
    for e in entries:
        flags = "attest" if e["requires_attestation"] else ""
        if e["commercial_use"] == "forbidden":
            flags = ",".join(filter(None, [flags, "non-commercial"]))
        _lines(
            [f"{e['id']:<22} {e['kind']:<16} {e['outputs_for_training']:<14} {flags:<20} {e['origin']:<8} {e['title']}"]
        )


@policy_app.command("show")
def show(
    policy_id: Annotated[str, typer.Argument(help="A policy id (see `synthdistill policy list`).")],
    config: ConfigOpt = None,
) -> None:
    """A policy in full: what it matches, the document, the deciding clause, the obligations."""
    policies = _policies(config)
    loaded = find_policy(policies, policy_id)
    if loaded is None:
        close = close_ids(policies, policy_id)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see `synthdistill policy list`"
        raise InputError(f"no policy has id '{policy_id}'{hint}")
    p = loaded.policy
    render.emit_json(
        {**p.model_dump(mode="json"), "origin": loaded.origin, "file": str(loaded.path), "sha256": loaded.sha256}
    )
    doc = p.document
    lines = [
        f"{p.id}: {p.title}  ({loaded.origin}, {loaded.path})",
        f"kind:          {p.kind}",
        f"models:        {', '.join(p.applies_to.models) or '-'}",
        *([f"not models:    {', '.join(p.applies_to.not_models)}"] if p.applies_to.not_models else []),
        f"hosts:         {', '.join(p.applies_to.hosts) or '-'} (and their sub-domains)",
        f"document:      {doc.url} (version {doc.version}, retrieved {doc.retrieved})",
        f"licence:       {p.licence.name} ({p.licence.spdx})",
        f"outputs:       {p.outputs_for_training}"
        + (" (non-commercial use only)" if p.commercial_use == "forbidden" else ""),
        f"attestation:   {'required' + (': ' + p.attestation_hint if p.attestation_hint else '') if p.requires_attestation else 'not required'}",
        f"clause:        {_clause(p.clause, p.clause_kind)}",
        *([f"text kept:     {doc.text}"] if doc.text else []),
        *(
            [
                f"overrides:     {', '.join(p.overrides)} (permission: {p.permission.granted_by}, {p.permission.date}, "
                f"{p.permission.reference})"
            ]
            if p.overrides and p.permission
            else []
        ),
        "obligations:",
        *[_obligation_line(o.model_dump()) for o in p.obligations],
    ]
    if not p.obligations:
        lines.append("  none")
    if p.conditions.max_monthly_active_users:
        lines.append(f"conditions:    at most {p.conditions.max_monthly_active_users:,} monthly active users")
    lines.extend(f"condition:     {c}" for c in p.conditions.stated)
    if p.notes:
        lines.append(f"notes:         {p.notes}")
    lines.append(f"sha256:        {loaded.sha256}")
    _lines(lines)


def _clause(clause: str, kind: str | None) -> str:
    """A clause, labelled when it is a summary and does not say so itself."""
    labelled = kind != "summary" or clause.lower().startswith("summary")
    return clause if labelled else f"{clause} (a summary, not a quote)"


def _obligation_line(obligation: dict[str, Any]) -> str:
    when = " (when distributing the student)" if obligation.get("when") == "distributing" else ""
    check = obligation.get("check") or {}
    checked = f" [checked: name begins with {check['name_prefix']!r}]" if check.get("name_prefix") else ""
    source = f" ({obligation['policy_id']})" if obligation.get("policy_id") else ""
    return f"  - {obligation['id']}{source}: {obligation['text']}{when}{checked}"


@policy_app.command("check")
def check(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Teacher model id (default: teacher.model of -c).")
    ] = None,
    base_url: Annotated[
        list[str] | None, typer.Option("--base-url", help="Teacher base URL; repeat for several.")
    ] = None,
    config: ConfigOpt = None,
    policy: Annotated[
        str | None, typer.Option("--policy", help="A policy id instead of matching (teacher.policy).")
    ] = None,
    commercial: Annotated[
        bool | None, typer.Option("--commercial/--non-commercial", help="Override use.commercial.")
    ] = None,
    distribute: Annotated[
        bool | None, typer.Option("--distribute/--no-distribute", help="Override use.distribute_student.")
    ] = None,
    competes: Annotated[
        bool | None, typer.Option("--competes/--not-competing", help="Override use.competes_with_teacher_provider.")
    ] = None,
    attestation: Annotated[str | None, typer.Option("--attestation", help="Override use.attestation.")] = None,
    overrides: SetOption = None,
) -> None:
    """The gate's decision for a teacher and a use: outcome, clause, obligations. Exit 3 when it would refuse."""
    if overrides and not config:
        raise InputError("--set overrides a key of distill.yaml: give -c distill.yaml too")
    # read only: writes nothing
    loaded_config = load_config(config, allow_outside=True, overrides=overrides) if config else None
    teacher = loaded_config.teacher if loaded_config else None
    model = model or (teacher.model if teacher else None)
    if not model:
        raise InputError("give --model MODEL (or -c distill.yaml to take the teacher from it)")
    urls = list(base_url) if base_url else (teacher.base_urls if teacher and not model_given(model, teacher) else [])
    use = loaded_config.use if loaded_config else UseConfig()
    overrides = {
        "commercial": commercial,
        "distribute_student": distribute,
        "competes_with_teacher_provider": competes,
        "attestation": attestation,
    }
    use = use.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    choice = policy or (teacher.policy if teacher and not model_given(model, teacher) else "auto")
    student_name = (
        (loaded_config.student.name or loaded_config.name) if loaded_config and loaded_config.student else None
    )
    project = _project_dir(config)
    decision = evaluate(
        _policies(config), model, urls, use, choice, student_name=student_name, project_hint=str(project / "policies")
    )
    render.emit_json(decision.model_dump(mode="json"))
    _lines(_decision_lines(decision))
    if not decision.allowed:
        # Exit 3 like the gate itself, so that scripts can test `policy check` by its exit code.
        raise PolicyDenied(f"the gate would refuse teacher '{decision.teacher_model}': {decision.reason}")


def model_given(model: str, teacher) -> bool:
    """True when --model names another teacher than the config's (its URLs and policy then do not apply)."""
    return model != teacher.model


def _decision_lines(d) -> list[str]:
    lines = [
        f"override:    project policy {o.policy_id} sets aside {', '.join(o.overridden)} on a written permission from "
        f"{o.permission.get('granted_by')} ({o.permission.get('date')}, {o.permission.get('reference')})"
        for o in d.overrides
    ]
    lines += [f"decision:    {d.outcome}" + (" (attested)" if d.attested else ""), f"reason:      {d.reason}"]
    lines.append(f"teacher:     {d.teacher_model}" + (f" at {', '.join(d.teacher_hosts)}" if d.teacher_hosts else ""))
    if d.policy_id:
        lines.append(
            f"policy:      {d.policy_id} — {d.policy_title} ({d.origin} {d.policy_file}, matched by {d.matched_by}, sha256 {d.policy_sha256[:12]}…)"
        )
        lines.append(
            f"document:    {d.document['url']} (version {d.document['version']}, retrieved {d.document['retrieved']})"
        )
        lines.append(f"clause:      {_clause(d.clause, d.clause_kind)}")
    for other in d.also_governed_by:
        lines.append(
            f"also:        {other.policy_id} — {other.title}: {other.outcome} ({other.origin} {other.policy_file})"
        )
    lines.extend(f"set aside:   {s.policy_id}: {s.why}" for s in d.set_aside)
    lines.extend(f"condition:   {c}" for c in d.conditions.get("stated", []))
    lines.append("obligations:" + ("" if d.obligations else " none"))
    lines.extend(_obligation_line(o.model_dump()) for o in d.obligations)
    lines.extend(f"warning:     {w}" for w in d.warnings)
    if d.how_to_proceed:
        lines.append("to proceed:")
        lines.extend(f"  - {step}" for step in d.how_to_proceed)
    return lines


@policy_app.command("validate")
def validate(paths: Annotated[list[Path], typer.Argument(help="Policy files or folders of them.")]) -> None:
    """Check policy files (YAML, keys, values, unique ids) without deciding anything; exit 2 on the first error."""
    checked = []
    for path in paths:
        if path.is_dir():
            checked.extend(load_policy_folder(path))
        elif path.exists():
            checked.append(load_policy_file(path))
        else:
            raise PolicyFileError("file not found", file=path)
    render.emit_json({"valid": [{"id": p.id, "file": str(p.path), "sha256": p.sha256} for p in checked]})
    _lines([f"ok  {p.id:<22} {p.path}" for p in checked])
