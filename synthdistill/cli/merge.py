"""`synthdistill merge RUN_DIR… [-o OUT]`: join shards' ledgers (merge.py does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from synthdistill.cli import render
from synthdistill.merge import merge

SHOWN_CONFLICTS = 10


def register_merge_command(app: typer.Typer) -> None:
    @app.command("merge")
    def merge_command(
        run_dirs: Annotated[
            list[Path],
            typer.Argument(metavar="RUN_DIR", help="Run folders of the shards (each with its harvest ledger)."),
        ],
        output: Annotated[
            Path | None,
            typer.Option("--output", "-o", help="Run folder to merge into (default: the first RUN_DIR)."),
        ] = None,
    ) -> None:
        """Merge the ledgers of shards harvested on several machines (`harvest --shard i/N`) into one run folder."""
        summary = merge(run_dirs, output)
        render.result(
            escape(
                f"merge: {summary.added} answers added, {summary.duplicates} already held, {summary.conflicts} "
                f"conflicts; {summary.answered} answered, {summary.failed} failed in {summary.ledger}"
            )
        )
        for item in summary.inputs:
            shard = f"shard {item.shard}" if item.shard else "not sharded"
            render.result(escape(f"  {item.run_dir} ({shard}): {item.answered} answered, {item.added} added"))
        for conflict in summary.conflict_list[:SHOWN_CONFLICTS]:
            render.result(
                escape(
                    f"  conflict: request {conflict.request_key} answered differently in {conflict.dropped_from}; "
                    f"kept the answer of {conflict.kept_from}"
                )
            )
        if summary.conflicts > SHOWN_CONFLICTS:
            render.result(f"  … {summary.conflicts - SHOWN_CONFLICTS} more conflicts (--json lists the first 100)")
        for warning in summary.warnings:
            render.result(escape(f"  warning: {warning}"))
        render.emit_json(summary.model_dump())
