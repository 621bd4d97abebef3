"""Output at the CLI edge: the one place that prints errors, summaries and progress."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.text import Text

from synthdistill.errors import printable


@dataclass
class OutputOptions:
    quiet: bool = False
    json: bool = False
    debug: bool = False
    # Under `torchrun`/`accelerate launch` every process runs the CLI; only rank 0 reports.
    secondary: bool = False
    # --allow-outside: let output_dir lie outside the project folder (a global option, like --json)
    allow_outside: bool = False
    # A --json object went to stdout in this invocation (a command that fails after its summary prints no second one).
    emitted: bool = False


def is_secondary_process() -> bool:
    """True in the non-zero ranks of a distributed launch (RANK is set by torchrun and accelerate)."""
    return os.environ.get("RANK", "0") != "0"


OPTIONS = OutputOptions()
# Human messages and progress go to stderr so that stdout carries only results (and --json).
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def info(message: str) -> None:
    """A human progress message (hidden by --quiet and --json)."""
    if not (OPTIONS.quiet or OPTIONS.json or OPTIONS.secondary):
        err_console.print(message)


def result(message: str) -> None:
    """A human result line on stdout (hidden by --json, which prints the summary instead)."""
    if not (OPTIONS.json or OPTIONS.secondary):
        # soft_wrap: a result line (a prompt, a table row) is never broken at 80 columns.
        out_console.print(message, soft_wrap=True)


def emit_json(summary: dict[str, Any]) -> None:
    """The machine-readable summary of a stage, printed only under --json."""
    if OPTIONS.json and not OPTIONS.secondary:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        sys.stdout.flush()
        OPTIONS.emitted = True


def emit_error_json(exc: BaseException, message: str, exit_code: int) -> None:
    """Under --json, a failed command still prints one object: its summary (if it has one) plus `error`.

    A command that printed its summary before failing (e.g. `policy check` refusing) prints nothing more.
    """
    if OPTIONS.emitted:
        return
    error_object = {"type": type(exc).__name__, "message": message, "exit_code": exit_code}
    emit_json({**(getattr(exc, "summary", None) or {}), "error": error_object})


def error(message: str) -> None:
    """One error line; `message` is plain text (brackets in paths such as `test[x]0/` are kept)."""
    # printable: a lone surrogate in a message would crash the print itself
    err_console.print(Text.assemble(("error:", "bold red"), " ", printable(message)), soft_wrap=True)


def show_progress() -> bool:
    return not (OPTIONS.quiet or OPTIONS.json or OPTIONS.secondary)
