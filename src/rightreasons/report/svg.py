"""Line charts as inline SVG, drawn by code (no plotting library): training curves for report.html."""

from __future__ import annotations

import math
from html import escape
from typing import Optional

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939")


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, y_label: str,
               y_range: Optional[tuple[float, float]] = None, width: int = 540, height: int = 280) -> str:
    """An SVG chart with one line (and point markers) per series, axes, ticks and a legend."""
    left, right, top, bottom = 56, 150, 28, 40
    points = [(x, y) for pts in series.values() for x, y in pts if math.isfinite(y)]
    if not points:
        return f'<p class="empty">{escape(title)}: no data</p>'
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = y_range if y_range else (min(ys), max(ys))
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + (1 - (min(max(y, y0), y1) - y0) / (y1 - y0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" font-size="11" text-anchor="end">{_label(t)}</text>')
    for t in _ticks(x0, x1, 8):
        if t == int(t):
            out.append(f'<text x="{sx(t):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle">{int(t)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="11" text-anchor="middle">epoch</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2})">{escape(y_label)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        good = [(x, y) for x, y in pts if math.isfinite(y)]
        if len(good) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in good]
        ly = top + 10 + 16 * i
        out.append(f'<rect x="{left + pw + 12}" y="{ly - 8}" width="12" height="4" fill="{colour}"/>'
                   f'<text x="{left + pw + 30}" y="{ly - 2}" font-size="11">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
