"""The curve: its rows (one per strategy, seed and budget) and revealed sets, the smallest budget reaching a
target, and the files written from it (curve.csv, curve.svg, revealed.json)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Optional

from ..files import atomic_write_json, atomic_write_text

DEFAULT_TARGET = 0.9
#: the columns of curve.csv
COLUMNS = ("strategy", "seed", "budget", "revealed", "accuracy", "worst_group_accuracy", "mean_group_accuracy",
           "mask_share", "train_seconds")


@dataclass
class GuidedCurve:
    """The rows of the curve (one per strategy, seed and budget, budget 0 first: the model without masks) and
    the revealed sets: ``revealed[strategy][seed][budget]`` = the sorted training indices revealed (a
    strategy named ``NAME+balance`` with ``balance``)."""

    rows: list[dict] = field(default_factory=list)
    revealed: dict = field(default_factory=dict)
    target: float = DEFAULT_TARGET


def mean_curve(rows: list[dict], column: str = "worst_group_accuracy") -> dict[str, list[tuple[int, float]]]:
    """{strategy: [(budget, mean of ``column`` over seeds)]}, budgets ascending."""
    values: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        values.setdefault(row["strategy"], {}).setdefault(int(row["budget"]), []).append(float(row[column]))
    return {s: [(b, sum(v) / len(v)) for b, v in sorted(by.items())] for s, by in values.items()}


def smallest_budget(rows: list[dict], target: float = DEFAULT_TARGET) -> dict[str, Optional[int]]:
    """{strategy: the smallest budget whose worst-group accuracy (mean over seeds) reaches ``target``, or None}."""
    return {s: next((b for b, v in pts if v >= target), None) for s, pts in mean_curve(rows).items()}


def curve_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in COLUMNS})
    return buffer.getvalue()


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def curve_svg(rows: list[dict], target: float = DEFAULT_TARGET, title: str = "worst-group test accuracy",
              width: int = 560, height: int = 300) -> str:
    """An SVG line chart of worst-group accuracy (mean over seeds) against the budget, log-scaled (budget 0,
    the model without masks, one decade left of the smallest budget), with a dashed line at ``target``; the
    chart is made wider for long strategy names."""
    series = mean_curve(rows)
    budgets = sorted({b for pts in series.values() for b, _ in pts})
    positive = [b for b in budgets if b > 0] or [1]
    lo, hi = math.log10(positive[0]) - 1, math.log10(positive[-1])
    hi = max(hi, lo + 1)
    longest = max((len(name) for name in series), default=0)
    right = max(130, 40 + 7 * longest)  # room for the legend
    width += right - 130
    left, top, bottom = 56, 28, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(b):
        return left + ((math.log10(b) if b > 0 else lo) - lo) / (hi - lo) * pw

    def sy(v):
        return top + (1 - min(max(v, 0.0), 1.0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" font-size="11" text-anchor="end">{t:g}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(target):.1f}" y2="{sy(target):.1f}" stroke="#555" '
               f'stroke-dasharray="4 3"/><text x="{left + pw - 4}" y="{sy(target) - 4:.1f}" font-size="10" '
               f'text-anchor="end">{target:g}</text>')
    for b in budgets:
        out.append(f'<text x="{sx(b):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle">{b}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="11" text-anchor="middle">'
               'masks revealed (log scale)</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2})">worst-group accuracy</text>')
    for i, (name, pts) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(b):.1f},{sy(v):.1f}" for b, v in pts if math.isfinite(v))
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{sx(b):.1f}" cy="{sy(v):.1f}" r="3" fill="{colour}"/>' for b, v in pts
                if math.isfinite(v)]
        ly = top + 10 + 16 * i
        out.append(f'<rect x="{left + pw + 12}" y="{ly - 8}" width="12" height="4" fill="{colour}"/>'
                   f'<text x="{left + pw + 30}" y="{ly - 2}" font-size="11">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


#: the files :func:`write_curve` writes into its directory
FILES = ("curve.csv", "curve.svg", "revealed.json")


def write_curve(out: str | Path, curve: GuidedCurve) -> list[Path]:
    """Write ``out/curve.csv``, ``out/curve.svg`` and ``out/revealed.json`` (each atomically); the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in FILES]
    atomic_write_text(paths[0], curve_csv(curve.rows))
    atomic_write_text(paths[1], curve_svg(curve.rows, curve.target))
    revealed = {s: {str(seed): {str(b): idx for b, idx in by.items()} for seed, by in seeds.items()}
                for s, seeds in curve.revealed.items()}
    atomic_write_json(paths[2], revealed)
    return paths
