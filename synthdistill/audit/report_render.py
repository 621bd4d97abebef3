"""The report's sections as Markdown (`report.md`) and as one self-contained HTML page (`report.html`).

The HTML page loads nothing: styles, the funnel chart (inline SVG) and a small script
are all inside it. The script marks `<body data-report-ready="yes">` once the page has
run, which lets a headless browser confirm that it loaded without errors.
"""

from __future__ import annotations

from html import escape
from typing import Any

from synthdistill.audit.report_sections import Block, Cell, Link, Section, report_sections

CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2330;
  max-width:1080px;margin:2em auto;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #d7dbe3;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;width:100%;margin:.6em 0}
th,td{border:1px solid #d7dbe3;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#f2f4f8}table.kv th{width:16em;background:#f7f8fb;font-weight:600}
#glance table.kv{font-size:1.1em}
#glance{background:#f6f9ff;border:1px solid #c9d6f2;border-radius:8px;padding:.2em 1em .8em}
code,.hash{font-family:ui-monospace,Consolas,monospace;font-size:.9em;word-break:break-all}
.meta{color:#5b6475}svg.funnel{max-width:100%;height:auto}svg text{font:13px system-ui,sans-serif}
"""

SCRIPT = """
(function () {
  var ready = document.querySelector('svg.funnel, #funnel p') !== null && document.getElementById('teacher') !== null;
  document.body.setAttribute('data-report-ready', ready ? 'yes' : 'incomplete');
})();
"""


# -- Markdown -------------------------------------------------------------------------------------


def _md_cell(cell: Cell) -> str:
    text = f"[{cell.text}]({cell.url})" if isinstance(cell, Link) else str(cell)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list[Cell]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]


def _md_block(block: Block) -> list[str]:
    if block.kind == "text":
        return [block.text]
    if block.kind == "kv":
        return _md_table(["", ""], [[f"**{k}**", v] for k, v in block.rows])
    if block.kind in ("table", "details"):
        return _md_table(block.headers, block.rows)
    return []  # the funnel chart is HTML only; its table follows it


def render_markdown(manifest: dict[str, Any], sections: list[Section] | None = None) -> str:
    sections = sections or report_sections(manifest)
    lines = [
        f"# Audit of run `{manifest['run']['name']}`",
        "",
        f"Generated {manifest['generated_at']} by synthdistill {manifest['versions']['tool']['version']} "
        f"from the run folder `{manifest['run']['run_dir']}`.",
    ]
    for section in sections:
        lines += ["", f"## {section.title}", ""]
        for block in section.blocks:
            lines += _md_block(block) + [""]
    return "\n".join(lines).rstrip() + "\n"


# -- HTML -----------------------------------------------------------------------------------------


def _html_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f'<a href="{escape(cell.url, quote=True)}" rel="noreferrer">{escape(cell.text)}</a>'
    text = escape(str(cell))
    return f'<span class="hash">{text}</span>' if len(text) == 64 and text.isalnum() else text


def _html_table(headers: list[str], rows: list[list[Cell]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def funnel_svg(steps: list[dict[str, Any]]) -> str:
    """Horizontal bars, one per stage, as wide as its row count; the drops written beside them."""
    width, label_w, row_h, bar_max = 760, 220, 30, 380
    top = max((s["count"] for s in steps), default=0) or 1
    height = row_h * len(steps) + 10
    parts = [
        f'<svg class="funnel" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="Rows kept at each stage">'
    ]
    for i, step in enumerate(steps):
        y = 5 + i * row_h
        w = max(1.0, bar_max * step["count"] / top)
        dropped = f"  −{step['dropped']}" if step["dropped"] else ""
        parts += [
            f'<text x="{label_w - 8}" y="{y + 19}" text-anchor="end">{escape(step["stage"])}</text>',
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="3" fill="#4f7cd6"><title>'
            f"{escape(step['stage'])}: {step['count']}</title></rect>",
            f'<text x="{label_w + w + 6:.1f}" y="{y + 19}">{step["count"]}'
            f'<tspan fill="#b3261e">{escape(dropped)}</tspan></text>',
        ]
    return "".join(parts) + "</svg>"


def html_block(block: Block) -> str:
    if block.kind == "text":
        return f"<p>{escape(block.text)}</p>"
    if block.kind == "kv":
        rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{_html_cell(v)}</td></tr>" for k, v in block.rows)
        return f'<table class="kv"><tbody>{rows}</tbody></table>'
    if block.kind == "table":
        return _html_table(block.headers, block.rows)
    if block.kind == "details":
        return f"<details><summary>{escape(block.summary)}</summary>{_html_table(block.headers, block.rows)}</details>"
    if block.kind == "funnel":
        return funnel_svg(block.steps)
    return ""


def render_html(manifest: dict[str, Any], sections: list[Section] | None = None) -> str:
    sections = sections or report_sections(manifest)
    name = escape(manifest["run"]["name"])
    body = "".join(
        f'<section id="{s.anchor}"><h2>{escape(s.title)}</h2>' + "".join(html_block(b) for b in s.blocks) + "</section>"
        for s in sections
    )
    meta = (
        f"Generated {escape(manifest['generated_at'])} "
        f"by synthdistill {escape(manifest['versions']['tool']['version'])} "
        f"from <code>{escape(manifest['run']['run_dir'])}</code>."
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Audit of run {name}</title><style>{CSS}</style></head>"
        f'<body data-report-ready="no"><h1>Audit of run <code>{name}</code></h1><p class="meta">{meta}</p>'
        f"{body}<script>{SCRIPT}</script></body></html>\n"
    )
