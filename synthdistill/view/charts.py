"""Inline SVG line charts for the page (no chart library: a few dozen lines of SVG do)."""

from __future__ import annotations

import math
from html import escape

COLOURS = ("#4f7cd6", "#d6564f", "#3a9d5d", "#b07cd6", "#d6a04f", "#4fb3d6")


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high == low:
        return [low]
    return [low + (high - low) * i / count for i in range(count + 1)]


def _step_ticks(low: float, high: float, count: int = 5) -> list[int]:
    """Round steps (multiples of 1, 2 or 5 × 10^n) from low to high, about `count` of them."""
    rough = max(1.0, (high - low) / count)
    power = 10 ** math.floor(math.log10(rough))
    every = next(int(m * power) for m in (1, 2, 5, 10) if m * power >= rough)
    first = math.ceil(low / every) * every
    return list(range(first, math.floor(high) + 1, every))


def _label(value: float) -> str:
    magnitude = abs(value)
    if magnitude and (magnitude < 1e-3 or magnitude >= 1e5):
        return f"{value:.1e}"
    return f"{value:.3g}"


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, css_class: str = "chart") -> str:
    """One SVG with a line per series over a shared x axis (steps), with a legend and axis labels."""
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    width, height, left, right, top, bottom = 560, 270, 64, 16, 48, 36
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    y1 = y1 if y1 > y0 else y0 + 1.0
    x1 = x1 if x1 > x0 else x0 + 1.0

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [
        f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title, quote=True)}">',
        f'<text x="{left}" y="16" class="title">{escape(title)}</text>',
        f'<line x1="{left}" y1="{sy(y0):.1f}" x2="{width - right}" y2="{sy(y0):.1f}" stroke="#98a1b3"/>',
    ]
    for tick in _ticks(y0, y1):
        y = sy(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#eef0f4"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>')
    for tick in _step_ticks(x0, x1):
        parts.append(f'<text x="{sx(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 4}" text-anchor="end">step</text>')
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(values))
        parts.append(
            f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2" data-series="{escape(name, quote=True)}">'
            f"<title>{escape(name)}: {_label(values[0][1])} → {_label(values[-1][1])}</title></path>"
        )
        lx = left + 10 + i * 110
        parts.append(f'<rect x="{lx}" y="28" width="12" height="4" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 16}" y="33">{escape(name)}</text>')
    return "".join(parts) + "</svg>"
