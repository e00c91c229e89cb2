"""results.csv: one row per finished run directory under ``DIR/runs``, rebuilt from those directories.

Columns: dataset, method, one per axis of the benchmark (``--axis KEY=...``, named by the key: the run's value
of that data option, ``all`` / ``none`` for an unset mask budget or corruption; bench/axes.py), seed, every
scalar test and validation metric (``test_*``, ``val_*``), the robustness report of runs that have one, an
entry per column (``test_robustness_natural_accuracy``, ``test_robustness_pgd_accuracy``,
``test_robustness_topk_intersection``, ``test_robustness_kendall``, and the settings), the per-group
accuracies as JSON, train seconds, wall seconds, peak memory, the number of annotated training examples the
run trained with (``train_annotated``), and the run's settings; with ``compare_selections``, per selection rule
the epoch it keeps, its score there and the test metrics of that epoch (``selection_<rule>_<entry>``).
Floats are written with full precision (``repr``), so numbers computed from the CSV are exact.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from pathlib import Path

from ..errors import UserError
from ..files import atomic_write_text, read_text
from ..train.run import read_finished_run
from .axes import order_key, read_axes, row_label

LEADING = ("dataset", "method", "seed", "test_worst_group_accuracy", "test_accuracy", "test_mean_group_accuracy",
           "test_macro_accuracy", "test_mask_gradient_share", "test_wrong_reason", "test_masked_pgd_accuracy",
           "test_ibp_certified_accuracy")
#: columns of the checkpoint-selection comparison (``compare_selections``): ``selection_<rule>_<entry>``, e.g.
#: ``selection_val_accuracy_test_worst_group_accuracy`` (train/selection.py)
SELECTION_PREFIX = "selection_"
#: metrics that are objects of settings and numbers: one column per entry (``test_robustness_kendall``)
FLATTENED = ("robustness",)
TRAILING = ("train_seconds", "wall_seconds", "peak_memory_mb", "selected_epoch", "train_annotated", "epochs", "model",
            "params", "data_options", "test_group_accuracy", "val_group_accuracy", "run")


def _scalar(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_row(run_dir: Path, axes=()) -> dict | None:
    """The CSV row of one run directory, or None if it holds no finished run: nothing yet, or files that are
    missing, unreadable, invalid or do not match the manifest. The harness counts such a run as to do and
    redoes it (or reports it as failed); a run left out for a broken file is also named in a warning.
    ``axes``: the axis keys, each a column holding the run's value of that data option."""
    try:
        config, metrics = read_finished_run(run_dir)
    except UserError as exc:
        if (run_dir / "metrics.json").exists():  # it got as far as saving: say why it is not in the table
            warnings.warn(f"{run_dir}: left out of results.csv ({exc})", stacklevel=2)
        return None
    row = {"dataset": config.get("data"), "method": config.get("method"), "seed": config.get("seed"),
           "run": run_dir.name, "epochs": config.get("epochs"), "model": config.get("model"),
           "params": json.dumps(config.get("params", {}), sort_keys=True),
           "data_options": json.dumps(config.get("data_options", {}), sort_keys=True)}
    for split in ("test", "val"):
        for key, value in (metrics.get(split) or {}).items():
            if _scalar(value):
                row[f"{split}_{key}"] = value
            elif key in FLATTENED and isinstance(value, dict):
                row.update({f"{split}_{key}_{k}": v for k, v in value.items() if _scalar(v) or isinstance(v, str)})
            elif isinstance(value, dict):
                row[f"{split}_{key}"] = json.dumps(value, sort_keys=True)
    for key in ("train_seconds", "wall_seconds", "peak_memory_mb", "selected_epoch", "train_annotated"):
        if _scalar(metrics.get(key)):
            row[key] = metrics[key]
    selections = metrics.get("selections") if isinstance(metrics.get("selections"), dict) else {}
    for rule, outcome in selections.items():  # runs with compare_selections: what each rule would keep
        if isinstance(outcome, dict):
            row.update({f"{SELECTION_PREFIX}{rule}_{k}": v for k, v in outcome.items() if _scalar(v)})
    options = config.get("data_options") if isinstance(config.get("data_options"), dict) else {}
    row.update({key: row_label(key, options) for key in axes})
    return row


def collect_rows(out: str | Path) -> list[dict]:
    """Rows of every finished run under ``out/runs``, sorted by dataset, method, axis values (in the order
    given) and seed."""
    runs = Path(out) / "runs"
    axes = read_axes(out)
    rows = [r for r in (run_row(d, axes) for d in sorted(runs.iterdir()) if d.is_dir()) if r] if runs.is_dir() \
        else []
    return sorted(rows, key=lambda r: (str(r["dataset"]), str(r["method"]),
                                       *(order_key(axes, k, r[k]) for k in axes),
                                       r["seed"] if _scalar(r["seed"]) else 0))


def columns(rows: list[dict], axes=()) -> list[str]:
    """The CSV's columns: LEADING with the ``axes`` (keys) after method, the other metrics sorted, TRAILING."""
    keys = set().union(*rows) if rows else set()
    axes = [k for k in axes if k in keys]
    leading = [*LEADING[:2], *axes, *LEADING[2:]]
    middle = sorted(k for k in keys if k not in leading and k not in TRAILING)
    return [k for k in leading if k in keys or not rows] + middle + [k for k in TRAILING if k in keys or not rows]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def write_results_csv(out: str | Path, rows: list[dict]) -> Path:
    """Write ``out/results.csv`` atomically (the axis columns those recorded in ``out``'s marker)."""
    cols = columns(rows, list(read_axes(out)))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in cols])
    path = Path(out) / "results.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def read_results_csv(path: str | Path) -> list[dict]:
    """Rows of a results.csv, numbers parsed (empty cells become None, ``nan`` NaN)."""
    text = read_text(path, "results")
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        row = {}
        for key, value in raw.items():
            row[key] = _parse(value)
        rows.append(row)
    return rows


def _parse(value: str | None):
    if value is None or value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
