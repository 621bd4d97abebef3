"""`synthdistill view [RUN_DIR] [-o FILE]`: one self-contained HTML page of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synthdistill import view
from synthdistill.cli import render
from synthdistill.cli.stages import ConfigOption, project


def do_view(run_dir: Path, output: Path | None = None, max_records: int = view.MAX_RECORDS) -> dict:
    page = view.run(run_dir, output=output, max_records=max_records)
    render.result(f"view: {page} (open it in a browser; it loads nothing from the network)")
    return {"page": str(page)}


def register_view_command(app: typer.Typer) -> None:
    @app.command("view")
    def view_command(
        run_dir: Annotated[
            Path | None,
            typer.Argument(help="The run folder, e.g. outputs/quickstart (default: the config's run folder)."),
        ] = None,
        output: Annotated[
            Path | None,
            typer.Option("--output", "-o", help="Where to write the page (default: the page in the run folder)."),
        ] = None,
        config: ConfigOption = Path("distill.yaml"),
        max_records: Annotated[
            int,
            typer.Option(
                "--max-records", min=1, help="Records the browser holds; beyond that, a seeded random sample."
            ),
        ] = view.MAX_RECORDS,
    ) -> None:
        """Write one self-contained HTML page of a run: funnel, records, datasets, training, eval, terms."""
        if run_dir is None:
            run_dir = project(config).run_dir
        render.emit_json(do_view(run_dir, output, max_records))
