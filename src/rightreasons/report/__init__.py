"""Benchmarks and reports: the bench harness, results.csv -> summary.md, report.html, saliency grids.

``rightreasons bench`` and ``rightreasons explain`` (see report/cli.py) are the command-line faces.
"""

from .presets import PRESETS, get_preset
from .published import PUBLISHED, SOURCES, published_for
from .saliency import attribution_kinds, explain_grid, methods_grid

__all__ = ["PRESETS", "PUBLISHED", "SOURCES", "attribution_kinds", "explain_grid", "get_preset", "methods_grid",
           "published_for"]
