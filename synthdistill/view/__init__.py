"""`synthdistill view`: one self-contained HTML page of a run (design §9's outputs, seen).

    run(run_dir, output=None, max_records=...) → the page's path (default <run>/view.html)

collect.py reads the run folder (RunLayout, store.LedgerReader, JSON, JSONL, Parquet footers),
shape.py turns it into what the page shows (pure), render.py fills the sandboxed jinja2
template shipped in templates/ (styles and script inline, charts as SVG). Like the audit, the
view never imports torch, transformers or datasets, and works on a run at any stage.
"""

from __future__ import annotations

from pathlib import Path

from synthdistill.errors import InputError
from synthdistill.run_layout import RunLayout
from synthdistill.safe_write import write_text
from synthdistill.view.collect import read_run
from synthdistill.view.render import render_page

# Records the browser holds at most (a seeded random sample beyond that); the page also caps their bytes.
MAX_RECORDS = 2000

__all__ = ["MAX_RECORDS", "run"]


def run(run_dir: Path, output: Path | None = None, max_records: int = MAX_RECORDS) -> Path:
    """Write the run's page and return its path."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise InputError("is not a run folder (run `synthdistill harvest` first, or name one)", file=run_dir)
    layout = RunLayout(run_dir)
    target = Path(output).resolve() if output is not None else layout.view_page
    html = render_page(read_run(run_dir, max_records), target)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text(target, html, inside=target.parent)
    return target
