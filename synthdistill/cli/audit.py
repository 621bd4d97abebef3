"""`synthdistill audit [-c FILE]`, `audit verify RUN_DIR` and `audit trace ID [-c FILE]`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from synthdistill.audit import render_trace, trace, verify_audit
from synthdistill.cli import render
from synthdistill.cli.stages import SetOption, project
from synthdistill.errors import InputError, SynthdistillError
from synthdistill.run_layout import RunLayout

audit_app = typer.Typer(
    help="Write the audit of a run (no command), verify its hashes, or trace a row.", invoke_without_command=True
)


def _plain(text: str) -> None:
    """Print text as is (no markup, no wrapping): prompts and paths may hold brackets."""
    if not render.OPTIONS.json:
        typer.echo(text)


ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Path to distill.yaml.")]


@audit_app.callback(invoke_without_command=True)
def write(ctx: typer.Context, config: ConfigOption = Path("distill.yaml"), overrides: SetOption = None) -> None:
    """Write outputs/<name>/audit/: manifest.json, report.md, report.html, bom.cdx.json."""
    if ctx.invoked_subcommand is not None:
        return
    render.emit_json(project(config, overrides).audit())


@audit_app.command("verify")
def verify(
    run_dir: Annotated[Path, typer.Argument(help="The run folder, e.g. outputs/quickstart.")],
    expect: Annotated[
        str | None,
        typer.Option(
            "--expect",
            metavar="SHA256",
            help="The manifest's sha256 as `audit` printed it; fail if the manifest differs.",
        ),
    ] = None,
) -> None:
    """Recompute every hash of audit/manifest.json; exit 1 naming each changed, missing or extra file."""
    if expect is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", expect.strip()):
        raise InputError(f"--expect takes the manifest's sha256 (64 hex digits), got '{expect}'")
    problems = verify_audit(run_dir, expect=expect)
    render.emit_json(
        {"run_dir": str(run_dir.resolve()), "ok": not problems, "problems": [p.to_dict() for p in problems]}
    )
    if problems:
        for problem in problems:
            _plain(str(problem))
        # A SynthdistillError (exit 1): main() renders it once; typer.Exit is swallowed outside standalone mode.
        raise SynthdistillError(f"{len(problems)} file(s) differ from the audit manifest of {run_dir}")
    render.result(f"verify: every hash in {RunLayout(run_dir).manifest} matches")


@audit_app.command("trace")
def trace_command(
    ident: Annotated[str, typer.Argument(metavar="ID", help="A prompt id or a training-row id (or a unique prefix).")],
    config: ConfigOption = Path("distill.yaml"),
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="The run folder (default: from the config).")
    ] = None,
    overrides: SetOption = None,
) -> None:
    """Show where a prompt or training row came from: pack, prompt, teacher, time, decision, filters."""
    if run_dir is None:
        run_dir = project(config, overrides).run_dir
    result = trace(run_dir, ident)
    _plain(render_trace(result))
    render.emit_json(result)
