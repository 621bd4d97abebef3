"""Render the page: the shaped data through a sandboxed jinja2 template shipped with the package.

The page is one file: the styles, the script and the records (a JSON block the script reads)
are inside it; the charts are inline SVG. It loads nothing from anywhere.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from synthdistill import __version__
from synthdistill.audit.report_render import funnel_svg, html_block
from synthdistill.audit.report_sections import obligations_section, teacher_section
from synthdistill.records import utc_now
from synthdistill.view import shape
from synthdistill.view.charts import line_chart
from synthdistill.view.collect import RunData

TEMPLATES = resources.files("synthdistill.view") / "templates"
# The records' JSON may take this much of the page; the sample stops there (the rest is a few hundred kB).
RECORDS_BUDGET_BYTES = 15_000_000


def _asset(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined, trim_blocks=True)
    environment.filters["number"] = lambda n: "–" if n is None else f"{n:,}"
    return environment


def _audit_link(data: RunData, output: Path) -> str | None:
    if data.audit_report is None:
        return None
    return Path(os.path.relpath(data.audit_report, output.resolve().parent)).as_posix()


def page_context(data: RunData, output: Path) -> dict[str, Any]:
    """Everything the template fills in."""
    # in request-key order (a hash: kept and dropped interleave), so a byte budget cuts both alike
    items = sorted((shape.record_item(e) for e in data.records), key=lambda item: item["id"] or "")
    held = shape.records_within(items, RECORDS_BUDGET_BYTES)
    shown: dict[str, int] = {}
    for item in items[: len(held)]:
        shown[item["status"]] = shown.get(item["status"], 0) + 1
    train = data.train or {}
    series = shape.training_series(train)
    losses = {name: values for name, values in series.items() if name != "learning_rate"}
    headers, rows = shape.eval_table(data.evaluation)
    teacher = data.teacher
    return {
        "name": data.run_dir.name,
        "run_dir": str(data.run_dir),
        "generated_at": utc_now(),
        "version": __version__,
        "funnel": shape.headline_funnel(data.harvest, data.filtered),
        "funnel_svg": Markup(funnel_svg(data.funnel_steps)) if data.funnel_steps else None,
        "drop_reasons": sorted(((data.filtered or {}).get("drop_reasons") or {}).items(), key=lambda kv: -kv[1]),
        "packs": shape.pack_funnel(data.pack_counts, data.tallies),
        "sample_note": shape.sample_note(data.populations, shown),
        "records_json": Markup("[" + ",\n".join(held) + "]"),
        "datasets": shape.dataset_rows(data.datasets),
        "alignment": shape.alignment_rows(data.datasets),
        "train": train,
        "loss_chart": Markup(line_chart(losses, "loss and its parts")),
        "lr_chart": Markup(line_chart({"learning_rate": series.get("learning_rate", [])}, "learning rate")),
        "loss_parts": sorted((train.get("loss_parts") or {}).items()),
        "eval": data.evaluation,
        "eval_headers": headers,
        "eval_rows": rows,
        "samples": (data.evaluation or {}).get("samples") or [],
        "decision": teacher.get("decision"),
        "terms_html": Markup("".join(html_block(b) for b in teacher_section(teacher))),
        "obligations_html": Markup("".join(html_block(b) for b in obligations_section(teacher))),
        "audit_link": _audit_link(data, output),
        "css": Markup(_asset("view.css")),
        "script": Markup(_asset("view.js")),
    }


def render_page(data: RunData, output: Path) -> str:
    """The page's HTML."""
    template = _environment().from_string(_asset("view.html.j2"))
    return template.render(**page_context(data, output))
