"""Bench axes: ``--axis KEY=V1,V2,...`` makes a data option multi-valued, every value another set of runs
(the cartesian product over several axes, innermost in the plan after seeds and thread counts).

``all`` (``annotated_count``, ``annotated_fraction``) and ``none`` (``mask_corruption``) mean the option not
set; those three keys are checked here with data/mask_budget.py's own checks, any other key is passed
through as a data option. A run's directory name gains ``-KEY=VALUE`` per axis (characters other than
letters, digits and ``._-`` as ``_``, with 8 hex digits of the value's sha256 when two values of an axis would
share a name). The axes of a benchmark directory are recorded in its marker (``bench.json``, the keys of
every invocation so far, with their values in the order given), so results.csv and summary.md show them
for every finished run, also for runs of an earlier invocation (from the option in the run's config).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..data.mask_budget import OPTIONS as BUDGET_OPTIONS
from ..data.mask_budget import PREFIXES as BUDGET_PREFIXES
from ..data.mask_budget import check_options, mask_budget_options
from ..errors import UserError
from ..files import read_json
from ..train.overrides import parse_value
from .harness import MARKER

#: the value that means "the option not set", per mask-budget key
UNSET = {"annotated_count": "all", "annotated_fraction": "all", "mask_corruption": "none"}
#: results.csv columns an axis may not be named after
RESERVED = ("dataset", "method", "seed", "run", "epochs", "model", "params", "data_options", "train_seconds",
            "wall_seconds", "peak_memory_mb", "selected_epoch", "train_annotated")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Axis:
    """One ``--axis``: its key, and per value (in the order given) its label and the data options it sets
    (``{}`` for the option not set)."""

    key: str
    values: tuple[tuple[str, dict], ...]

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.values]

    def part(self, label: str) -> str:
        """The run-directory name part of a value: ``KEY=VALUE``."""
        return f"{self.key}={_name_parts(self.labels)[label]}"


def label(value) -> str:
    """How a data option's value is shown (run names, results.csv, summary.md): a string as it is, anything
    else as JSON (``10``, ``0.5``, ``true``)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def row_label(key: str, options: dict) -> Optional[str]:
    """The axis value of a run with data options ``options``: the option's label, or the key's unset value
    (``all`` / ``none``; None for other keys) when it is not set."""
    return label(options[key]) if key in options else UNSET.get(key)


def _name_parts(labels: Sequence[str]) -> dict[str, str]:
    safe = {lab: _NAME_CHARS.sub("_", lab)[:40] for lab in labels}
    counts: dict[str, int] = {}
    for name in safe.values():
        counts[name] = counts.get(name, 0) + 1
    return {lab: name if counts[name] == 1 and name == _NAME_CHARS.sub("_", lab) and name.strip("._")
            else f"{name}-{hashlib.sha256(lab.encode()).hexdigest()[:8]}" for lab, name in safe.items()}


def _value(key: str, text: str) -> tuple[str, dict, str]:
    """(label, data options, canonical form for spotting repeats) of one value of ``--axis key=...``."""
    where = f"bench: --axis {key}={text}"
    if UNSET.get(key) == text:
        return text, {}, "unset"
    try:
        value = parse_value(text)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    if key.startswith(BUDGET_PREFIXES):
        if key not in BUDGET_OPTIONS:
            mask_budget_options(where, {key: value})  # an unknown annotated_* / mask_corruption* key: refused
        checked = check_options(where, **{key: value})[key]
        if checked is None:  # null, or mask_corruption false
            return UNSET[key], {}, "unset"
        return label(value), {key: value}, label(checked)
    return label(value), {key: value}, label(value)


def parse_axes(items: Sequence[str], data_options: Sequence[str] = ()) -> list[Axis]:
    """``["annotated_count=10,all", ...]`` -> the axes, values checked (a one-line UserError naming the axis and
    the value); a key also given by a ``--data-option`` (``data_options``, ``[SCOPE.]KEY=VALUE``) is an error."""
    given = {item.partition("=")[0].strip().rpartition(".")[2]: item for item in data_options}
    axes: list[Axis] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"bench: --axis {item!r}: expected KEY=V1,V2,...")
        if not _KEY.fullmatch(key):
            raise UserError(f"bench: --axis {key}: KEY must be the name of a data option (letters, digits, _), "
                            "for every dataset of the benchmark")
        if key in RESERVED or key.startswith(("test_", "val_")):
            raise UserError(f"bench: --axis {key}: {key!r} is a column of results.csv; it cannot name an axis")
        if any(a.key == key for a in axes):
            raise UserError(f"bench: --axis {key} is given twice; give all its values in one --axis")
        if key in given:
            raise UserError(f"bench: --axis {key} and --data-option {given[key]}: give {key} as an axis or as a "
                            "data option, not both")
        values, seen = [], set()
        for part in text.split(","):
            if not part.strip():
                continue
            lab, options, canonical = _value(key, part.strip())
            if canonical not in seen:  # a value given twice (or twice in other words, dilate and dilate:1): once
                seen.add(canonical)
                values.append((lab, options))
        if not values:
            raise UserError(f"bench: --axis {key}=: give at least one value (V1,V2,...)")
        axes.append(Axis(key, tuple(values)))
    return axes


def combinations(axes: Sequence[Axis]) -> list[tuple[tuple[Axis, str, dict], ...]]:
    """Every combination of one value per axis (the first axis outermost): ((axis, label, options), ...);
    ``[()]`` without axes."""
    return list(itertools.product(*[[(axis, lab, options) for lab, options in axis.values] for axis in axes]))


def combined_options(options: dict, combination) -> dict:
    """``options`` with the combination's axis keys replaced by its values (removed for an unset value)."""
    out = {k: v for k, v in options.items() if k not in {axis.key for axis, _, _ in combination}}
    for _, _, given in combination:
        out.update(given)
    return out


def check_combination(data: str, options: dict, combination) -> None:
    """The mask-budget options of a run of ``data`` checked together (annotated_count and annotated_fraction
    from two axes, or from an axis and a data option, are refused), naming the dataset and the axis values."""
    if not combination:
        return
    where = ", ".join(f"{axis.key}={lab}" for axis, lab, _ in combination)
    mask_budget_options(f"bench: {data} with --axis {where}", options)


# ------------------------------------------------------------------------------------------------ the marker


def read_axes(out: str | Path) -> dict[str, list[str]]:
    """The axes recorded in ``out``'s marker: key -> value labels in order; ``{}`` without a (valid) marker."""
    path = Path(out) / MARKER
    if not path.is_file():
        return {}
    try:
        marker = read_json(path, "benchmark marker")
    except UserError:
        return {}
    axes = marker.get("axes") if isinstance(marker, dict) else None
    if not isinstance(axes, dict):
        return {}
    return {str(k): [str(v) for v in values] for k, values in axes.items() if isinstance(values, list)}


def merge_axes(old: dict[str, list[str]], new: dict[str, list[str]]) -> dict[str, list[str]]:
    """The axes of a directory after another invocation: the old keys then the new ones; a key's values in
    the new invocation's order, then its old values that it left out."""
    out = {k: list(v) for k, v in old.items()}
    for key, values in new.items():
        out[key] = list(dict.fromkeys([*values, *out.get(key, [])]))
    return out


def order_key(axes: dict[str, list[str]], key: str, value) -> tuple:
    """Sort key of an axis value (a label, or a value read back from results.csv): its place among the
    recorded values, then unknown ones by label."""
    text = "" if value is None else label(value)
    known = axes.get(key, [])
    return (known.index(text), "") if text in known else (len(known), text)
