"""Your own table: ``load_dataset("csv:PATH", **options)`` (CLI: ``--data csv:PATH``).

A CSV file with a header; one row per example. x has shape (N, F), one column per feature, in the
order of the file (or of option ``features``).

Options:
- ``label`` (column, default ``label``): class names (numbered in sorted order, or as ``classes``
  lists them) or integers 0..K-1 (``num_classes`` fixes K).
- ``group`` (column, optional; default: the label) for worst-group accuracy.
- ``split`` (column, optional): train / val / test; without it, a seeded stratified split
  (``val_fraction`` 0.15, ``test_fraction`` 0.15 of each class); with it but no val rows,
  ``val_fraction`` of each train class becomes val.
- ``features`` (``a,b,c``; default: every other column). Cells must be plain decimal numbers (``12``,
  ``-0.5``, ``1e-3``) within float32 range: an empty cell, NaN, inf, ``1_000``, ``0x10`` or ``1e400`` is an
  error naming the row and column (impute or drop such rows first).
- ``mask_columns`` (``a,b``): features to ignore in every row (mask = 1 there).
- ``mask_file`` (path): a second CSV with the same feature columns (any order) and one row per data
  row, cells 0 or 1 (1 = ignore); a row whose cells are all empty is not annotated (``has_mask``
  False). With ``mask_columns`` as well, the two masks are combined (OR) and every row is annotated.
- ``standardize`` (``true``/``false``, default false): subtract the mean and divide by the standard
  deviation of each feature, both fitted on the train split only (recorded in ``info``).

``input_range`` is the smallest interval holding every value of x, so masked attacks never clamp a
real value. Row numbers count the header as row 1.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, UserError
from .csv_common import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    SPLIT_NAMES,
    encode_labels,
    encode_splits,
    label_and_split_options,
    one_line_errors,
    option_bool,
    option_names,
    parse_options,
    read_csv,
    resolve_splits,
)
from .dataset import DataSplits, ExplanationDataset

#: a feature cell: optional sign, ASCII digits with an optional decimal point, optional exponent
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: the largest magnitude a float32 holds (x is float32)
MAX_VALUE = float(np.finfo(np.float32).max)
DEFAULTS = {"label": "label", "group": None, "split": None, "features": None, "mask_columns": None,
            "mask_file": None, "standardize": False, "classes": None, "num_classes": None,
            "val_fraction": DEFAULT_VAL_FRACTION, "test_fraction": DEFAULT_TEST_FRACTION}


def _column(source: str, key: str, value):
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{source}: option {key} must be a column name, got {value!r}")
    return value.strip()


def _check_known(path: Path, header: list[str], names, what: str) -> None:
    for name in names:
        if name not in header:
            raise DataError(f"{path}: unknown column {name!r} ({what}); columns: {', '.join(header)}")


def _number(path: Path, row: int, column: str, cell: str) -> float:
    """A feature cell as a float. Only a plain decimal number is one (``12``, ``-0.5``, ``1e-3``; spaces around
    it are stripped when the file is read): Python's float() also takes ``1_000``, full-width digits and
    ``nan`` / ``inf``, which are refused here, each naming the row and column."""
    if cell == "":
        raise DataError(f"{path} row {row}, column {column!r}: empty cell (impute or drop missing values first)")
    word = cell.lower().lstrip("+-")
    if word == "nan":
        raise DataError(f"{path} row {row}, column {column!r}: NaN (impute or drop missing values first)")
    if word in ("inf", "infinity"):
        raise DataError(f"{path} row {row}, column {column!r}: {cell[:40]!r} is not a finite number")
    if not _DECIMAL.fullmatch(cell):
        raise DataError(f"{path} row {row}, column {column!r}: {cell[:40]!r} is not a number (expected a plain "
                        "decimal such as 12, -0.5 or 1e-3: no underscores, thousands separators, hex or units)")
    value = float(cell)
    if not math.isfinite(value) or abs(value) > MAX_VALUE:
        raise DataError(f"{path} row {row}, column {column!r}: {cell[:40]!r} is too large "
                        f"(beyond float32, about {MAX_VALUE:.1e})")
    return value


def _mask_file(path: Path, features: list[str], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask (N, F) bool, has_mask (N,) bool) from a per-cell 0/1 CSV."""
    header, rows = read_csv(path, "mask CSV")
    missing = [f for f in features if f not in header]
    extra = [c for c in header if c not in features]
    if missing or extra:
        detail = "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                         extra and f"not features: {', '.join(extra)}"]))
        raise DataError(f"{path}: mask columns must be the feature columns ({', '.join(features)}); {detail}")
    if len(rows) != n_rows:
        raise DataError(f"{path}: {len(rows)} rows but the data has {n_rows}; one mask row per data row")
    order = [header.index(f) for f in features]
    mask = np.zeros((n_rows, len(features)), dtype=bool)
    has = np.ones(n_rows, dtype=bool)
    for i, (row, cells) in enumerate(rows):
        values = [cells[j] for j in order]
        if all(v == "" for v in values):
            has[i] = False
            continue
        for f, v in zip(features, values):
            if v not in ("0", "1", "0.0", "1.0"):
                raise DataError(f"{path} row {row}, column {f!r}: mask value {v[:40]!r} is not 0 or 1")
        mask[i] = [v in ("1", "1.0") for v in values]
    return mask, has


@one_line_errors
def load_table(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """A CSV table (see the module docstring) as train / val / test splits of (N, F) features."""
    path = Path(path)
    source = f"csv:{path}"
    opts = parse_options(source, options, DEFAULTS)
    label_col = _column(source, "label", opts["label"])
    group_col = _column(source, "group", opts["group"])
    split_col = _column(source, "split", opts["split"])
    features = option_names(source, "features", opts["features"])
    mask_columns = option_names(source, "mask_columns", opts["mask_columns"])
    mask_file = opts["mask_file"]
    if mask_file is not None and (not isinstance(mask_file, str) or not mask_file):
        raise UserError(f"{source}: option mask_file must be a path, got {mask_file!r}")
    standardize = option_bool(source, "standardize", opts["standardize"])
    classes, num_classes, val_f, test_f, rng = label_and_split_options(source, opts, seed, "csv")

    header, rows = read_csv(path, "CSV table")  # "no such file", a FIFO, a device, a link loop: one line each
    special = [c for c in (label_col, group_col, split_col) if c is not None]
    if label_col not in header:
        raise DataError(f"{path}: no label column {label_col!r} (set option label=COLUMN); "
                        f"columns: {', '.join(header)}")
    _check_known(path, header, special, "option label/group/split")
    if features is None:
        features = [c for c in header if c not in special]
    else:
        _check_known(path, header, features, "option features")
        clash = [f for f in features if f in special]
        if clash:
            raise UserError(f"{source}: column {clash[0]!r} cannot be both a feature and the label/group/split")
    if not features:
        raise DataError(f"{path}: no feature columns (only {', '.join(header)})")
    for name in mask_columns or []:
        if name not in features:
            raise UserError(f"{source}: mask column {name!r} is not a feature; features: {', '.join(features)}")

    row_numbers = [r for r, _ in rows]
    cell = {name: [cells[header.index(name)] for _, cells in rows] for name in header}
    y, class_names = encode_labels(path, row_numbers, cell[label_col], f"label (column {label_col!r})",
                                   classes, num_classes)
    if group_col is not None:
        group, group_names = encode_labels(path, row_numbers, cell[group_col], f"group (column {group_col!r})")
    else:
        group, group_names = y.copy(), class_names
    splits = encode_splits(path, row_numbers, cell[split_col], f"split (column {split_col!r})") if split_col else None
    x = np.array([[_number(path, row, f, cell[f][i]) for f in features] for i, row in enumerate(row_numbers)],
                 dtype=np.float64)

    n = len(rows)
    mask = np.zeros((n, len(features)), dtype=bool)
    has_mask = np.zeros(n, dtype=bool)
    if mask_file is not None:
        mask, has_mask = _mask_file(Path(mask_file), features, n)
    if mask_columns:
        mask[:, [features.index(c) for c in mask_columns]] = True
        has_mask[:] = True

    split, how = resolve_splits(path, y, splits, rng, val_f, test_f)
    info = {"dataset": "csv", "path": str(path), "features": features, "classes": class_names,
            "groups": group_names, "split": how, "seed": seed, "mask_columns": mask_columns,
            "mask_file": mask_file, "annotated": int(has_mask.sum())}
    if standardize:
        train = x[split == 0]
        mean, std = train.mean(0), train.std(0)
        std = np.where(std > 0, std, 1.0)
        x = (x - mean) / std
        info["standardize"] = {"mean": mean.tolist(), "std": std.tolist()}
    x = x.astype(np.float32)
    low, high = float(x.min()), float(x.max())
    info["input_range"] = [low, high]
    out = {}
    for i, name in enumerate(SPLIT_NAMES):
        idx = np.flatnonzero(split == i)
        out[name] = ExplanationDataset(
            torch.from_numpy(x[idx]), torch.from_numpy(y[idx]), torch.from_numpy(mask[idx]),
            torch.from_numpy(group[idx]), torch.from_numpy(has_mask[idx]), num_classes=len(class_names),
            num_groups=len(group_names), name=f"{path.name}/{name}", input_range=(low, high))
    info["sizes"] = {s: len(out[s]) for s in SPLIT_NAMES}
    return DataSplits(out["train"], out["val"], out["test"], info)
