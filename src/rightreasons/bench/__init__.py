"""Running experiments: planning a benchmark from a preset and flags (plan), every (dataset, method, seed)
in its own process and run directory (harness, worker), the published comparisons (presets) and numbers
(published), and results.csv.
Rendering them (summary.md, report.html) is :mod:`rightreasons.report`'s job."""

from .harness import RunSpec, expand_methods, run_bench, run_state
from .plan import BenchPlan, plan_bench, plan_runs
from .presets import PRESETS, Preset, get_preset
from .published import PUBLISHED, SOURCES, published_for
from .results import collect_rows, read_results_csv, write_results_csv

__all__ = ["BenchPlan", "PRESETS", "PUBLISHED", "Preset", "RunSpec", "SOURCES", "collect_rows", "expand_methods",
           "get_preset", "plan_bench", "plan_runs", "published_for", "read_results_csv", "run_bench", "run_state",
           "write_results_csv"]
