"""results.csv -> summary.md: mean ± standard deviation per dataset and method (and value of each axis of
the benchmark, ``bench --axis``), computed by code, and the minimum of the worst-group accuracy over the runs
(seeds and thread counts).

The standard deviation is the sample one (n - 1 in the denominator; none for a single run). Datasets with
runs that have a robustness report (the ``robustness`` training setting) also show its columns. NaN
values (e.g. the mask share on data without masks) are left out of a mean. Within a dataset, methods
are ordered by mean worst-group accuracy, best first (a method's rows of axis values together, in the order
the values were given); published numbers stand beside ours with their
source keys, and the sources are listed at the end. Published numbers of a downloaded dataset
(``isic:PATH``) are matched by its prefix and the data options every run of the dataset shares.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..bench.axes import label, order_key, read_axes
from ..bench.published import SOURCES, format_published, published_for
from ..bench.results import SELECTION_PREFIX, read_results_csv
from ..files import atomic_write_text
from ..train.selection import UNAVERAGED

#: (results.csv column, header, decimals): worst-group accuracy first
COLUMNS = (
    ("test_worst_group_accuracy", "worst-group acc.", 3),
    (MIN_COLUMN := "test_worst_group_accuracy_min", "worst-group min", 3),
    ("test_accuracy", "accuracy", 3),
    ("test_mean_group_accuracy", "mean-group acc.", 3),
    ("test_mask_gradient_share", "grad. share in mask", 3),
    ("test_wrong_reason", "wrong reason", 3),
    ("test_masked_pgd_accuracy", "masked-PGD acc.", 3),
    ("test_ibp_certified_accuracy", "IBP-cert. acc.", 3),
    ("train_seconds", "train s", 1),
    ("peak_memory_mb", "peak MB", 0),
)
#: the robustness report of runs trained with the ``robustness`` setting (shown for datasets with such runs),
#: placed before the time and memory columns
ROBUSTNESS_COLUMNS = (
    ("test_robustness_eps", "attack eps", 2),
    ("test_robustness_natural_accuracy", "natural acc.", 3),
    ("test_robustness_pgd_accuracy", "PGD acc.", 3),
    ("test_robustness_topk_intersection", "top-k inter.", 3),
    ("test_robustness_kendall", "Kendall", 3),
)

#: the checkpoint-selection comparison (runs with ``compare_selections``): per rule, the test worst-group accuracy
#: of the epoch it keeps (mean ± std and min) and that epoch (mean)
SELECTION_RULES = (("last", "last epoch"), ("val_accuracy", "val acc."),
                   ("val_worst_group_accuracy", "val worst-group"), ("val_broken_accuracy", "broken-val acc."),
                   ("val_broken_worst_group_accuracy", "broken-val worst-group"),
                   (UNAVERAGED, "last epoch, not averaged"))


def selection_column(rule: str, entry: str = "test_worst_group_accuracy") -> str:
    return f"{SELECTION_PREFIX}{rule}_{entry}"


@dataclass
class Stat:
    mean: float
    std: Optional[float]
    n: int

    def format(self, decimals: int) -> str:
        if self.n == 0:
            return "n/a"
        text = f"{self.mean:.{decimals}f}"
        return text if self.std is None else f"{text} ± {self.std:.{decimals}f}"


@dataclass
class MethodSummary:
    method: str
    runs: int
    stats: dict
    axes: dict = field(default_factory=dict)  #: axis key -> this row's value (label; None: not set)

    @property
    def name(self) -> str:
        """The method, with its axis values (``rrr annotated_count=10``)."""
        return " ".join([self.method] + [f"{k}={'unset' if v is None else v}" for k, v in self.axes.items()])


def stat(values) -> Stat:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(float(v))]
    if not vals:
        return Stat(math.nan, None, 0)
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))


def minimum(values) -> Stat:
    """The smallest of the numbers among ``values`` (NaN left out), as a Stat without a spread."""
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(float(v))]
    return Stat(min(vals), None, len(vals)) if vals else Stat(math.nan, None, 0)


def summarize(rows: list[dict], axes: Optional[dict] = None) -> dict[str, list[MethodSummary]]:
    """dataset -> one summary per method (per method and axis values, ``axes``: key -> value labels in order,
    as recorded by the benchmark), best mean worst-group accuracy first."""
    out: dict[str, list[MethodSummary]] = {}
    axes = axes or {}
    key = COLUMNS[0][0]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        keys = [k for k in axes if any(k in r for r in mine)]
        groups: dict[tuple, list[dict]] = {}
        for r in mine:
            value = tuple(None if r.get(k) is None else label(r.get(k)) for k in keys)
            groups.setdefault((r["method"], value), []).append(r)
        methods = list(dict.fromkeys(r["method"] for r in mine))
        rank = {m: stat(r.get(key) for r in mine if r["method"] == m) for m in methods}
        items = []
        for (method, value), runs in groups.items():
            stats = {col: stat(r.get(col) for r in runs) for col, _, _ in COLUMNS + ROBUSTNESS_COLUMNS}
            stats[MIN_COLUMN] = minimum(r.get(COLUMNS[0][0]) for r in runs)
            for rule, _ in SELECTION_RULES:
                for column in (selection_column(rule), selection_column(rule, "epoch")):
                    stats[column] = stat(r.get(column) for r in runs)
                stats[selection_column(rule) + "_min"] = minimum(r.get(selection_column(rule)) for r in runs)
            items.append(MethodSummary(method, len(runs), stats, dict(zip(keys, value))))
        items.sort(key=lambda m: (-rank[m.method].mean if rank[m.method].n else math.inf, methods.index(m.method),
                                  *(order_key(axes, k, v) for k, v in m.axes.items())))
        out[str(dataset)] = items
    return out


def table_columns(items: list[MethodSummary]) -> tuple:
    """The columns of one dataset's table: COLUMNS, with ROBUSTNESS_COLUMNS before the time and memory ones
    when some run of the dataset has a robustness report."""
    if not any(item.stats[col].n for item in items for col, _, _ in ROBUSTNESS_COLUMNS):
        return COLUMNS
    return COLUMNS[:-2] + ROBUSTNESS_COLUMNS + COLUMNS[-2:]


def shared_data_options(rows: list[dict]) -> dict[str, dict]:
    """dataset -> the data options every one of its rows has (results.csv's ``data_options``, JSON)."""
    out: dict[str, dict] = {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        common = None
        for r in rows:
            if r["dataset"] != dataset:
                continue
            try:
                options = json.loads(r.get("data_options") or "{}")
            except (TypeError, ValueError):
                options = {}
            options = options if isinstance(options, dict) else {}
            common = dict(options) if common is None else {k: v for k, v in common.items()
                                                           if k in options and options[k] == v}
        out[str(dataset)] = common or {}
    return out


def published_cell(dataset: str, method: str, data_options: Optional[dict] = None) -> str:
    return "; ".join(format_published(p) for p in published_for(dataset, method, data_options)) or "–"


def unmatched_published(dataset: str, methods, data_options: Optional[dict] = None) -> list[str]:
    return [f"{format_published(p)} ({p.method}{', ' + p.note if p.note else ''})"
            for p in published_for(dataset, data_options=data_options) if p.method not in methods]


def selection_table(items: list[MethodSummary]) -> list[str]:
    """The lines of a dataset's checkpoint-selection table (none when no run compared the rules): per method
    and rule, the test worst-group accuracy of the epoch the rule keeps, mean ± std (min), and that epoch."""
    rules = [(rule, header) for rule, header in SELECTION_RULES
             if any(item.stats[selection_column(rule)].n for item in items)]
    if not rules:
        return []
    keys = list(items[0].axes) if items else []
    lines = ["", "Checkpoint selection: test worst-group accuracy of the epoch each rule keeps, mean ± std (min; "
             "the epoch kept, mean). No rule reads test; broken-val = the validation split with the shortcut "
             "broken inside its masks." + (" With weight averaging (ema_decay) every rule reads the averaged "
                                           "weights; the last column is the last epoch's own weights."
                                           if any(rule == UNAVERAGED for rule, _ in rules) else ""), "",
             "| " + " | ".join(["method", *keys, "runs"] + [h for _, h in rules]) + " |",
             "|" + "|".join(["---"] * (2 + len(keys)) + ["---:"] * len(rules)) + "|"]
    for item in items:
        cells = [item.method, *["unset" if v is None else v for v in item.axes.values()], str(item.runs)]
        for rule, _ in rules:
            score, low = item.stats[selection_column(rule)], item.stats[selection_column(rule) + "_min"]
            epoch = item.stats[selection_column(rule, "epoch")]
            cells.append("n/a" if not score.n else f"{score.format(3)} ({low.mean:.3f}; epoch {epoch.mean:.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(summary: dict[str, list[MethodSummary]], command: Optional[str] = None,
                    data_options: Optional[dict] = None) -> str:
    """summary.md's text; ``data_options``: dataset -> the options its runs share (to match published numbers)."""
    data_options = data_options or {}
    lines = ["# Benchmark summary", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += ["Computed from results.csv by `rightreasons.report.summary`: test split, mean ± sample standard "
              "deviation over seeds (runs = number of seeds"
              + (", per method and axis value" if any(i.axes for items in summary.values() for i in items) else "")
              + "). Worst-group = worst per-group accuracy "
              "(groups = labels unless the data options say otherwise). "
              "Published numbers: value, metric, [source].", ""]
    if any(table_columns(items) != COLUMNS for items in summary.values()):
        lines += ["Robustness (runs trained with the robustness setting): on the first test examples, at the "
                  "attack eps; natural acc. and PGD acc. = accuracy before / under l_inf PGD, top-k inter. and "
                  "Kendall = mean top-k intersection and Kendall's tau of IG saliency maps under the top-k "
                  "attribution attack (correctly classified examples only).", ""]
    used = set()
    for dataset, items in summary.items():
        lines += [f"## {dataset}", ""]
        cols = table_columns(items)
        keys = list(items[0].axes) if items else []
        header = ["method", *keys, "runs"] + [h for _, h, _ in cols] + ["published"]
        rule = "|" + "|".join(["---"] * (2 + len(keys)) + ["---:"] * len(cols) + ["---"]) + "|"
        lines += ["| " + " | ".join(header) + " |", rule]
        options = data_options.get(dataset)
        for item in items:
            values = ["unset" if v is None else v for v in item.axes.values()]
            cells = [item.method, *values, str(item.runs)] + [item.stats[c].format(d) for c, _, d in cols]
            lines.append("| " + " | ".join(cells + [published_cell(dataset, item.method, options)]) + " |")
            used.update(p.source for p in published_for(dataset, item.method, options))
        lines += selection_table(items)
        extra = unmatched_published(dataset, {i.method for i in items}, options)
        if extra:
            lines += ["", "Published, no matching run here: " + "; ".join(extra) + "."]
            used.update(p.source for p in published_for(dataset, data_options=options)
                        if p.method not in {i.method for i in items})
        lines.append("")
    if used:
        lines += ["## Sources", ""]
        lines += [f"- [{key}] {SOURCES[key].citation}. {SOURCES[key].where}." for key in SOURCES if key in used]
        lines.append("")
    return "\n".join(lines)


def write_summary(out: str | Path, command: Optional[str] = None) -> Path:
    """Read ``out/results.csv`` and write ``out/summary.md`` atomically (rows per axis value: the axes recorded
    in ``out``'s bench.json)."""
    out = Path(out)
    rows = read_results_csv(out / "results.csv")
    text = render_markdown(summarize(rows, read_axes(out)), command, shared_data_options(rows))
    atomic_write_text(out / "summary.md", text)
    return out / "summary.md"
