"""The command line: parses arguments and wires the stages. Nothing imports it.

Heavy libraries (torch, transformers, trl) are imported inside the stages that need
them, so `--help`, `packs`, `policy` and `audit` start fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
import typer.main

try:  # typer >= 0.22 vendors click as typer._click; older typer raises click's own exceptions
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

from synthdistill import __version__
from synthdistill.cli import render
from synthdistill.cli.audit import audit_app
from synthdistill.cli.merge import register_merge_command
from synthdistill.cli.packs import packs_app
from synthdistill.cli.policy import policy_app
from synthdistill.cli.stages import register_stage_commands
from synthdistill.cli.view import register_view_command
from synthdistill.errors import InputError, SynthdistillError

INTERRUPTED = "interrupted; re-run to resume"

app = typer.Typer(
    name="synthdistill",
    help="Distil a permitted teacher LLM into a small open student, with provenance for every row.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        render.result(f"synthdistill {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    context: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors and results."),
    json_output: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    allow_outside: bool = typer.Option(
        False, "--allow-outside", help="Let output_dir lie outside the project folder (distill.yaml's folder)."
    ),
) -> None:
    render.OPTIONS.quiet = quiet
    render.OPTIONS.json = json_output
    render.OPTIONS.debug = debug
    render.OPTIONS.allow_outside = allow_outside
    render.OPTIONS.secondary = render.is_secondary_process()
    if os.environ.get("WORLD_SIZE", "1") != "1" and context.invoked_subcommand != "train":
        # Two processes harvesting or building at once would send every request twice.
        raise InputError(
            f"`synthdistill {context.invoked_subcommand}` runs in one process; only `train` runs under "
            "torchrun/accelerate launch (run harvest, filter and build first, then launch train)"
        )


register_stage_commands(app)
register_view_command(app)
register_merge_command(app)
app.add_typer(packs_app, name="packs")
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")


def _flags_take_no_value(command: Any) -> Any:
    """Show flags as flags in --help (`--commercial / --non-commercial`, `--fresh`), not as `<bool>` options.

    typer's help prints every option's type, flags included, as if `--fresh <bool>` took a value.
    """
    for param in command.params:
        if getattr(param, "is_flag", False):  # typer's own click (typer._click) or click
            param.metavar = ""
    make_help_option = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option  # type: ignore[method-assign]
    for sub in getattr(command, "commands", {}).values():
        _flags_take_no_value(sub)
    return command


command = _flags_take_no_value(typer.main.get_command(app))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and render any error once, with its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    # Options may also follow the command (`synthdistill run --json`): hoist the global ones.
    hoisted = [a for a in argv if a in ("--quiet", "-q", "--json", "--debug", "--allow-outside")]
    rest = [a for a in argv if a not in hoisted]
    try:
        # Without standalone mode, click returns the code of a `typer.Exit(n)` instead of raising it.
        returned = command.main(args=hoisted + rest, prog_name="synthdistill", standalone_mode=False)
        if returned == 130:  # typer catches Ctrl-C itself and returns 130 without a word
            render.error(INTERRUPTED)
        return returned if isinstance(returned, int) else 0
    except SynthdistillError as exc:
        if render.OPTIONS.debug:
            raise
        render.error(str(exc))
        render.emit_error_json(exc, str(exc), exc.exit_code)
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort) as exc:
        render.error(INTERRUPTED)
        render.emit_error_json(exc, INTERRUPTED, 130)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:  # usage errors: unknown option, extra argument, missing argument
        exc.show()
        render.emit_error_json(exc, exc.format_message(), exc.exit_code)
        return exc.exit_code
    finally:
        render.OPTIONS.quiet = render.OPTIONS.json = render.OPTIONS.debug = render.OPTIONS.secondary = False
        render.OPTIONS.allow_outside = False
        render.OPTIONS.emitted = False
