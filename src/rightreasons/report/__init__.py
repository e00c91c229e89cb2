"""Rendering documents: summary.md and report.html of a benchmark directory, saliency grids (PNG),
training curves (SVG), and docs/methods.md (the methods page)."""

from .saliency import attribution_kinds, explain_grid, methods_grid

__all__ = ["attribution_kinds", "explain_grid", "methods_grid"]
