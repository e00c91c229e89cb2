"""Planning a benchmark: from a preset and the ``bench`` command's flags to the resolved run specs and the
command line that reproduces them.

Settings are layered: TrainConfig defaults, then the preset's, then the flags given. ``--param`` and
``--data-option`` assignments are ``[SCOPE.]KEY=VALUE``: with a scope (a method, a dataset) they apply to
it alone; without one, a method parameter goes to every method that has it and a data option to every
dataset. The scope ends at the last dot, so a dataset spec with a path is a scope as it is
(``isic:/data/isic.size=64``); the prefix alone (``isic.size=64``) names the one dataset with that prefix.

Any dataset spec trains: a registered name, ``PREFIX:PATH`` (a downloaded dataset), ``folder:PATH`` and
``csv:PATH``. Paths are recorded as given and must exist when the plan is made; their runs are named
``PREFIX-<last path component>-METHOD-seedK`` (with a hash of the spec when two would share a name).
A preset of a downloaded dataset takes its PATH from ``data_path`` (``--data-path``), or from a ``--data``
spec with its prefix.

``--axis KEY=V1,V2,...`` (bench/axes.py) makes a data option an axis: every run once per value, the names
ending in ``-KEY=VALUE``; without axes (and with one thread count) the names are as above.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import UserError
from ..train.config import TrainConfig
from ..train.overrides import parse_assignments
from .axes import Axis, check_combination, combinations, combined_options, parse_axes
from .harness import RunSpec, available_cores, expand_methods, model_for
from .presets import Preset, get_preset, path_presets

#: TrainConfig fields the ``bench`` command sets by flags of the same name (``--batch-size`` for batch_size)
FLAG_FIELDS = ("model", "epochs", "batch_size", "lr", "lr_schedule", "device", "precision", "select", "val_break",
               "compare_selections", "ema_decay")
#: the preset settings over TrainConfig defaults (None in the preset: the default)
PRESET_FIELDS = ("epochs", "model", "lr", "lr_schedule", "batch_size", "optimizer", "weight_decay", "select")
DEFAULT_SEEDS = 3


@dataclass
class BenchPlan:
    """The runs of a benchmark and how it was asked for."""

    specs: list[RunSpec]
    command: str  #: the ``rightreasons bench ...`` command line that reproduces the plan
    datasets: list[str]
    methods: list[str]
    seeds: int
    jobs: int
    threads: int
    preset: Optional[Preset]
    axes: dict = field(default_factory=dict)  #: axis key -> its value labels, in order (``--axis``)


def thread_counts(threads) -> list[int]:
    """``None`` -> ``[]``; ``2`` -> ``[2]``; ``"1,2"`` or ``[1, 2]`` -> ``[1, 2]`` (distinct, in order)."""
    if threads is None:
        return []
    items = split_names(threads) if isinstance(threads, str) else list(threads) if isinstance(
        threads, (list, tuple)) else [threads]
    counts = []
    for item in items:
        try:
            if isinstance(item, bool):
                raise TypeError
            count = int(item)
        except (TypeError, ValueError):
            raise UserError(f"bench: --threads must be a number or numbers separated by commas, got {threads!r}") \
                from None
        if count not in counts:
            counts.append(count)
    return counts


def split_names(text: Optional[str]) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None or empty -> ``[]``."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def scoped_assignments(items: Sequence[str], option: str, known: Sequence[str], what: str,
                       fallback: Callable[[str], list[str]]) -> dict:
    """``SCOPE.KEY=VALUE`` -> ``{scope: {key: value}}`` for a ``scope`` among ``known`` (``what`` names them,
    plural); an unscoped ``KEY=VALUE`` goes to every scope ``fallback(key)`` lists, and to none is an error."""
    out: dict = {}
    for key, value in parse_assignments(tuple(items), option).items():
        scope, dot, name = key.rpartition(".")
        targets = [scope] if dot else fallback(key)
        if dot and scope not in known:
            raise UserError(f"{option} {key}={value!r}: {scope!r} is not one of the {what} of this benchmark "
                            f"({', '.join(known)})")
        if not targets:
            raise UserError(f"{option} {key}={value!r}: no {what[:-1]} of this benchmark has a parameter {key!r}")
        for target in targets:
            out.setdefault(target, {})[name if dot else key] = value
    return out


def path_spec(spec: str) -> Optional[tuple[str, str]]:
    """(prefix, path) of a ``PREFIX:PATH``, ``folder:PATH`` or ``csv:PATH`` spec; None for a registered name."""
    from ..data.registry import OWN_DATA, PATH_DATASETS

    prefix, sep, path = spec.partition(":")
    return (prefix, path) if sep and (prefix in PATH_DATASETS or prefix in OWN_DATA) else None


def check_dataset(spec: str) -> None:
    """A one-line UserError unless ``spec`` is a registered dataset or a path spec whose path exists."""
    from ..data import DATASETS

    parts = path_spec(spec)
    if parts is None:
        DATASETS.get(spec)  # unknown names: the registry's one-line error naming the known ones
        return
    prefix, path = parts
    if not path:
        raise UserError(f"bench: dataset {spec!r}: give a path after '{prefix}:'")
    if not os.path.exists(path):
        raise UserError(f"bench: dataset {spec!r}: {path}: no such file or directory")


def run_labels(datasets: Sequence[str]) -> dict[str, str]:
    """dataset spec -> the name its run directories start with: a registered name as it is, a path spec
    ``PREFIX-<last path component>`` (other characters than letters, digits, ``._-`` as ``_``), with 8 hex
    digits of the spec's sha256 appended when two specs would share a name."""
    labels = {}
    for spec in datasets:
        parts = path_spec(spec)
        if parts is None:
            labels[spec] = spec
            continue
        prefix, path = parts
        tail = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(os.path.normpath(path)))
        labels[spec] = f"{prefix}-{tail}" if tail.strip("._") else prefix
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {spec: label if counts[label] == 1 or path_spec(spec) is None
            else f"{label}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}" for spec, label in labels.items()}


def plan_runs(out: str | Path, datasets: Sequence[str], methods: Sequence[str], seeds: Sequence[int],
              base: TrainConfig, params: Optional[dict] = None, data_options: Optional[dict] = None,
              threads: Optional[int | Sequence[int]] = None, axes: Sequence[Axis] = ()) -> list[RunSpec]:
    """Resolved configs of every (dataset, method, seed, thread count, axis values), in that order, with their
    run directories (``DIR/runs/<label>-<method>-seed<k>``, the label of :func:`run_labels`, then
    ``-threads<n>`` when there are several counts and ``-KEY=VALUE`` per axis); any dataset spec, paths
    checked, and the mask-budget options of every combination of axis values checked before any run."""
    from ..train.run import resolved_config

    params, data_options = params or {}, data_options or {}
    for data in datasets:
        check_dataset(data)
    labels = run_labels(datasets)
    counts = list(threads) if isinstance(threads, (list, tuple)) else [threads]
    combos = combinations(axes)
    options = {data: {**base.data_options, **data_options.get(data, {})} for data in datasets}
    for data in datasets:
        for combo in combos:
            check_combination(data, combined_options(options[data], combo), combo)
    specs = []
    for data in datasets:
        for method in methods:
            for seed in seeds:
                for count in counts:  # several thread counts: each one another run (summation order differs)
                    for combo in combos:
                        config = base.replace(data=data, method=method, seed=int(seed), threads=count,
                                              model=model_for(method, base.replace(data=data).model_name()),
                                              params=dict(params.get(method, {})),
                                              data_options=combined_options(options[data], combo))
                        config.validate()
                        suffix = f"-threads{count}" if len(counts) > 1 else ""
                        suffix += "".join(f"-{axis.part(lab)}" for axis, lab, _ in combo)
                        run_dir = Path(out) / "runs" / f"{labels[data]}-{method}-seed{seed}{suffix}"
                        specs.append(RunSpec(resolved_config(config), run_dir,
                                             {axis.key: lab for axis, lab, _ in combo}))
    return specs


def _resolve_preset(chosen: Optional[Preset], data_path: Optional[str], data: Optional[str]) -> Optional[Preset]:
    """The preset with its data path (a preset of a downloaded dataset), checked to exist."""
    if chosen is None or chosen.path_prefix is None:
        if data_path is not None:
            raise UserError("bench: --data-path is for the presets of downloaded datasets "
                            f"({', '.join(path_presets())}); without one, give --data PREFIX:PATH")
        return chosen
    if data_path is None:
        mine = [parts[1] for d in split_names(data) if (parts := path_spec(d)) and parts[0] == chosen.path_prefix]
        if len(mine) != 1:
            raise chosen.missing_data()
        data_path = mine[0]
    if not data_path:
        raise chosen.missing_data("give a non-empty --data-path PATH")
    if not os.path.exists(data_path):
        raise chosen.missing_data(f"{data_path}: no such directory")
    return chosen.with_path(data_path)


def _methods(methods: Optional[str], chosen: Optional[Preset]) -> list[str]:
    from ..methods import METHODS

    if split_names(methods):
        return expand_methods(split_names(methods))
    if chosen is None:
        return expand_methods(["mask"])
    missing = [m for m in chosen.methods if m not in METHODS.names()]
    if missing:
        warnings.warn(f"preset {chosen.name}: not registered here, skipped: {', '.join(missing)}", stacklevel=2)
    return [m for m in chosen.methods if m in METHODS.names()]


def _at_least_one(name: str, value: Optional[int]) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UserError(f"bench: {name} must be a whole number of at least 1, got {value!r}")


def _strings(items) -> tuple[str, ...]:
    return (items,) if isinstance(items, str) else tuple(items or ())


def plan_bench(out: str | Path, *, preset: str | Preset | None = None, data: Optional[str] = None,
               data_path: Optional[str] = None, methods: Optional[str] = None, seeds: Optional[int] = None,
               model: Optional[str] = None,
               epochs: Optional[int] = None, batch_size: Optional[int] = None, lr: Optional[float] = None,
               lr_schedule: Optional[str] = None, params: Sequence[str] = (), data_options: Sequence[str] = (),
               jobs: int = 1, threads: Optional[int | Sequence[int]] = None, device: Optional[str] = None,
               precision: Optional[str] = None, select: Optional[str] = None,
               val_break: Optional[str] = None, compare_selections: Optional[bool] = None,
               ema_decay: Optional[float] = None,
               axes: Sequence[str] = ()) -> BenchPlan:
    """The benchmark the ``bench`` command's flags describe, writing nothing. ``data`` and ``methods`` are
    comma-separated names (default: the preset's; methods ``mask`` without a preset); ``params`` and
    ``data_options`` are ``[SCOPE.]KEY=VALUE`` strings; ``threads`` defaults to the cores over ``jobs``;
    several thread counts (a list, or ``"1,2"``) make it an axis beside the seeds: every run once per count.
    ``axes``: ``KEY=V1,V2,...`` strings (``--axis``, bench/axes.py), every run once per combination of values.
    A preset's methods that are not registered are skipped with a warning. ``data_path``: the PATH of a
    preset of a downloaded dataset (``heo2023-isic``); without it (and without a ``--data`` spec of that
    dataset) such a preset is a one-line error naming the dataset and where to download it."""
    from ..methods import METHODS

    counts = thread_counts(threads)
    for name, value in (("seeds", seeds), ("jobs", jobs), *(("threads", c) for c in counts or [None])):
        _at_least_one(name, value)
    params, data_options = _strings(params), _strings(data_options)
    axis_list = parse_axes(_strings(axes), data_options)
    chosen = preset if isinstance(preset, Preset) else get_preset(preset) if preset else None
    chosen = _resolve_preset(chosen, data_path, data)
    datasets = split_names(data) or list(chosen.datasets if chosen else [])
    if not datasets:
        raise UserError("bench: give --data (comma-separated datasets) or --preset")
    method_names = _methods(methods, chosen)
    n_seeds = seeds if seeds is not None else (chosen.seeds if chosen else DEFAULT_SEEDS)

    settings = {k: getattr(chosen, k) for k in PRESET_FIELDS} if chosen else {}
    base = TrainConfig(**{k: v for k, v in settings.items() if v is not None})
    flags = dict(zip(FLAG_FIELDS, (model, epochs, batch_size, lr, lr_schedule, device, precision, select, val_break,
                                   compare_selections, ema_decay)))
    base = base.replace(**{k: v for k, v in flags.items() if v is not None})

    method_params = {m: dict(v) for m, v in (chosen.params if chosen else {}).items()}
    given = scoped_assignments(params, "--param", method_names, "methods",
                               lambda key: [m for m in method_names if key in METHODS.get(m).defaults])
    for m, kv in given.items():
        method_params.setdefault(m, {}).update(kv)
    options = {d: dict(v) for d, v in (chosen.data_options if chosen else {}).items()}
    prefixes = [p[0] for d in datasets if (p := path_spec(d))]
    aliases = {p[0]: d for d in datasets if (p := path_spec(d)) and prefixes.count(p[0]) == 1 and p[0] not in datasets}
    for d, kv in scoped_assignments(data_options, "--data-option", list(datasets) + list(aliases), "datasets",
                                    lambda key: list(datasets)).items():
        options.setdefault(aliases.get(d, d), {}).update(kv)

    counts = counts or [max(1, available_cores() // jobs)]
    threads = counts[0]
    specs = plan_runs(out, datasets, method_names, range(n_seeds), base, method_params, options, counts, axis_list)
    if chosen is not None:  # the preset's per-dataset hyperparameters (under --param) and robustness settings
        specs = chosen.refine(specs, given, flags)
    words = ["rightreasons", "bench"] + (["--preset", chosen.name] if chosen else [])
    words += ["--data-path", chosen.data_path] if chosen is not None and chosen.data_path is not None else []
    words += ["--data", ",".join(datasets), "--methods", ",".join(method_names), "--seeds", str(n_seeds)]
    words += [w for k, v in flags.items() if v is not None for w in _flag_words(k, v)]
    words += [w for p in params for w in ("--param", p)] + [w for o in data_options for w in ("--data-option", o)]
    words += [w for a in axis_list for w in ("--axis", f"{a.key}={','.join(a.labels)}")]
    words += ["--jobs", str(jobs), "--threads", ",".join(map(str, counts)), "--out", str(out)]
    return BenchPlan(specs=specs, command=" ".join(shlex.quote(w) for w in words), datasets=datasets,
                     methods=method_names, seeds=n_seeds, jobs=jobs, threads=threads, preset=chosen,
                     axes={a.key: a.labels for a in axis_list})


def _flag_words(field: str, value) -> list[str]:
    """The command-line words of a training flag: ``--name VALUE``, or ``--name`` / ``--no-name`` for a switch."""
    name = field.replace("_", "-")
    if isinstance(value, bool):
        return [f"--{name}" if value else f"--no-{name}"]
    return [f"--{name}", str(value)]
