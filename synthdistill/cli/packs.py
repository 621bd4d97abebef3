"""`synthdistill packs list | show | validate | render | new | stats`: thin wiring over `synthdistill.packs`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from synthdistill import packs
from synthdistill.cli import render
from synthdistill.errors import PackError
from synthdistill.packs import stats as pack_stats

packs_app = typer.Typer(help="List, show, validate, render, create and measure prompt packs.", no_args_is_help=True)

PackArg = Annotated[str, typer.Argument(help="A pack folder, or the name of a shipped pack (e.g. general-chat).")]


def _load(reference: str) -> packs.Pack:
    return packs.load_pack(packs.resolve_pack_path(reference, Path.cwd()))


def _where(path: Path) -> str:
    """A folder as the user would type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@packs_app.command("list")
def list_packs() -> None:
    """The shipped packs and the packs under ./prompts."""
    entries: list[dict[str, Any]] = []
    for origin, folder in packs.discover_packs(Path.cwd()):
        entry: dict[str, Any] = {"name": folder.name, "origin": origin, "path": str(folder)}
        try:
            pack = packs.load_pack(folder)
        except PackError as exc:  # one broken pack must not hide the others
            entry.update(version=None, licence=None, prompts=None, description="", tags=[], error=str(exc))
        else:
            entry.update(name=pack.name, version=pack.version, licence=pack.licence, prompts=len(pack.prompts))
            entry.update(description=pack.description, tags=pack.tags)
        entries.append(entry)
    render.emit_json({"packs": entries})
    if not entries:
        render.result("no packs found (shipped or under ./prompts); create one with `synthdistill packs new NAME`")
    for e in entries:
        if "error" in e:
            line = f"{e['name']:<22} {'-':<8} {'-':>6}  {'-':<12} {e['origin']:<8} INVALID: {e['error']}"
        else:
            line = f"{e['name']:<22} {e['version']:<8} {e['prompts']:>6}  {e['licence']:<12} {e['origin']:<8} {e['description']}"
        render.result(escape(line))


@packs_app.command("show")
def show(pack: PackArg) -> None:
    """A pack's metadata, verifier, sampling overrides and its first prompt."""
    loaded = _load(pack)
    spec = loaded.spec
    summary = {
        **spec.model_dump(mode="json", by_alias=True, exclude_unset=True),
        "path": str(loaded.path),
        "prompts": len(loaded.prompts),
        "content_sha256": loaded.content_sha256(),
        "files": loaded.file_hashes(),
    }
    render.emit_json(summary)
    lines = [
        f"{spec.name} {spec.version}  ({_where(loaded.path)})",
        f"description: {spec.description or '-'}",
        f"licence:     {spec.licence}",
        f"source:      {spec.source or '-'}",
        f"tags:        {', '.join(spec.tags) or '-'}",
        f"prompts:     {len(loaded.prompts)} (from {spec.rows or 'variables'})",
        f"sampling:    {spec.sampling_overrides() or 'harvest defaults'}",
        f"verify:      {_describe_verify(loaded)}",
        f"sha256:      {loaded.content_sha256()}",
    ]
    if loaded.prompts:
        lines += ["", "first prompt:", *_prompt_lines(loaded.prompts[0])]
    for line in lines:
        render.result(escape(line))


def _describe_verify(pack: packs.Pack) -> str:
    verify = pack.spec.verify
    if verify is None:
        return "none"
    if verify.kind == "answer":
        return f"answer: field '{verify.field}', pattern /{verify.pattern}/, tolerance {verify.tolerance:g}"
    if verify.kind == "json-schema":
        where = verify.schema_ if isinstance(verify.schema_, str) else "inline"
        return f"json-schema ({where})"
    return f"regex /{verify.pattern}/{' (full match)' if verify.full_match else ''}"


def _prompt_lines(prompt) -> list[str]:
    lines = [f"── {prompt.prompt_id}  {prompt.source}"]
    for message in prompt.messages:
        lines.append(f"[{message.role}] {message.content}")
        for call in message.tool_calls or []:
            lines.append(f"  → calls {call.function.name}({call.function.arguments})")
    answer_format = prompt.answer_format
    if answer_format is not None:
        for tool in answer_format.tools or []:
            lines.append(f"[tool offered] {tool['function']['name']}: {tool['function'].get('description', '')}")
        if answer_format.tool_choice is not None:
            lines.append(f"[tool_choice] {json.dumps(answer_format.tool_choice)}")
        if answer_format.response_format is not None:
            lines.append(f"[response_format] {json.dumps(answer_format.response_format, ensure_ascii=False)}")
    return lines


@packs_app.command("validate")
def validate(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="Pack folders, folders of packs, or shipped pack names (default: every pack `list` shows)."
        ),
    ] = None,
) -> None:
    """Check packs completely without sending a request: YAML, keys, rows, templates, verifiers, licence."""
    if paths:
        references, skipped = packs.expand_references(paths, Path.cwd())
    else:
        references, skipped = [str(folder) for _, folder in packs.discover_packs(Path.cwd())], []
    for name in skipped:
        render.info(escape(f"skipped {name}: a file, not a pack folder"))
    reports = []
    errors: list[PackError] = []
    for reference in references:
        try:
            folder = packs.resolve_pack_path(reference, Path.cwd())
        except PackError as exc:
            report = packs.ValidationReport(path=Path(reference), errors=[exc])
        else:
            report = packs.validate_pack(folder)
        reports.append(report)
        errors.extend(report.errors)
        for warning in report.warnings:
            render.info(escape(f"warning: {_where(report.path)}: {warning}"))
        if report.ok:
            render.result(
                escape(f"ok  {_where(report.path)}  {report.name} {report.version}: {report.prompts} prompts")
            )
        elif report.more_errors:
            render.info(f"{report.more_errors} more problems in {escape(_where(report.path))} not shown")
    render.emit_json({"ok": not errors, "packs": [r.to_dict() for r in reports]})
    if not references:
        raise PackError(
            "no packs to validate; name pack folders, or create one with `synthdistill packs new NAME`", file=Path.cwd()
        )
    if errors:
        # Every problem is shown once; the last one is raised so that the exit code is 2.
        for error in errors[:-1]:
            render.error(str(error))
        raise errors[-1]


@packs_app.command("render")
def render_prompts(
    pack: PackArg,
    n: Annotated[int, typer.Option("-n", "--number", help="How many prompts to show (0 = all).")] = 5,
) -> None:
    """Show the first N prompts exactly as they will be sent to the teacher."""
    loaded = _load(pack)
    chosen = loaded.prompts if n <= 0 else loaded.prompts[:n]
    render.emit_json({"pack": loaded.name, "total": len(loaded.prompts), "prompts": [p.model_dump() for p in chosen]})
    for index, prompt in enumerate(chosen):
        if index:
            render.result("")
        for line in _prompt_lines(prompt):
            render.result(escape(line))
    if len(chosen) < len(loaded.prompts):
        render.info(f"({len(chosen)} of {len(loaded.prompts)} prompts shown; -n 0 shows all)")


@packs_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Name of the new pack (also its folder name).")],
    directory: Annotated[Path, typer.Option("--dir", help="Folder to create the pack in.")] = Path("prompts"),
) -> None:
    """Write a commented starter pack (pack.yaml + rows.jsonl) that validates."""
    folder = packs.create_pack(name, directory)
    render.emit_json({"name": name, "path": str(folder), "files": ["pack.yaml", "rows.jsonl"]})
    render.result(escape(f"wrote {folder / 'pack.yaml'} and {folder / 'rows.jsonl'}"))
    render.info(escape(f"edit them, then check with: synthdistill packs validate {folder}"))


@packs_app.command("stats")
def stats(
    pack: PackArg,
    tokenizer: Annotated[
        str | None, typer.Option("--tokenizer", help="Model folder or embedded model whose tokenizer counts tokens.")
    ] = None,
) -> None:
    """Prompt count, token length distribution (min/median/p90/max) and near-duplicate prompts."""
    loaded = _load(pack)
    render.info("loading tokenizer…")
    summary = pack_stats.pack_stats(loaded, pack_stats.load_tokenizer(tokenizer))
    summary["tokenizer"] = tokenizer or pack_stats.DEFAULT_TOKENIZER
    render.emit_json(summary)
    tokens = summary["tokens"]
    multi = summary["turns"]["multi_turn"]
    lines = [
        f"{summary['pack']} {summary['version']}: {summary['prompts']} prompts ({multi} multi-turn)",
        f"prompt tokens ({summary['tokenizer']}, chat template included): min {tokens['min']}, median "
        + f"{tokens['median']:g}, p90 {tokens['p90']}, max {tokens['max']}, total {tokens['total']}",
        f"near-duplicates (same text up to case, spacing, punctuation): {summary['duplicates']}",
    ]
    lines += [f"  {d['source']} repeats {d['same_as']}" for d in summary["duplicate_sources"][:20]]
    for line in lines:
        render.result(escape(line))
