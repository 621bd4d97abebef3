"""The filter funnel as readable lines, from `filtered/report.json`."""

from __future__ import annotations

from typing import Any

TOP_REASONS = 3  # reasons shown per step; report.json has them all


def funnel_lines(report: dict[str, Any]) -> list[str]:
    """A table of the funnel: per step records in, kept, dropped, and the commonest reasons."""
    total, kept = report.get("input", 0), report.get("kept", 0)
    share = f" ({kept / total:.1%})" if total else ""
    lines = [f"filter: {total} records → {kept} kept{share}, {report.get('dropped', 0)} dropped"]
    if report.get("schema_invalid"):
        lines.append(f"  schema: {report['schema_invalid']} structured answers never valid for their schema, dropped")
    steps = report.get("steps", [])
    if not steps:
        return lines + ["  no filters configured"]
    width = max(len(step["name"]) for step in steps)
    lines.append(f"  {'step':<{width}}  {'in':>8}  {'kept':>8}  {'dropped':>8}  reasons")
    for step in steps:
        reasons = sorted(step.get("reasons", {}).items(), key=lambda item: (-item[1], item[0]))
        shown = ", ".join(f"{name} {count}" for name, count in reasons[:TOP_REASONS])
        if len(reasons) > TOP_REASONS:
            shown += f", {len(reasons) - TOP_REASONS} more"
        if step.get("modified"):
            changed = ", ".join(f"{name} {count}" for name, count in sorted(step.get("modified_reasons", {}).items()))
            shown = ", ".join(filter(None, [shown, changed]))
        lines.append(
            f"  {step['name']:<{width}}  {step['input']:>8}  {step['kept']:>8}  {step['dropped']:>8}  {shown or '-'}"
        )
    return lines
