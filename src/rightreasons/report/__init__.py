"""Rendering documents: summary.md and report.html of a benchmark directory, saliency grids (PNG),
training curves (SVG), and docs/methods.md (the methods page)."""

from ..bench.presets import PRESETS, get_preset  # old import path, kept for existing code
from ..bench.published import PUBLISHED, SOURCES, published_for  # old import path, kept for existing code
from .saliency import attribution_kinds, explain_grid, methods_grid

__all__ = ["PRESETS", "PUBLISHED", "SOURCES", "attribution_kinds", "explain_grid", "get_preset", "methods_grid",
           "published_for"]
