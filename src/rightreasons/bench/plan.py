"""Planning a benchmark: from a preset and the ``bench`` command's flags to the resolved run specs and the
command line that reproduces them.

Settings are layered: TrainConfig defaults, then the preset's, then the flags given. ``--param`` and
``--data-option`` assignments are ``[SCOPE.]KEY=VALUE``: with a scope (a method, a dataset) they apply to
it alone; without one, a method parameter goes to every method that has it and a data option to every
dataset.
"""

from __future__ import annotations

import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import UserError
from ..train.config import TrainConfig
from ..train.overrides import parse_assignments
from .harness import RunSpec, available_cores, expand_methods, plan_runs
from .presets import Preset, get_preset

#: TrainConfig fields the ``bench`` command sets by flags of the same name (``--batch-size`` for batch_size)
FLAG_FIELDS = ("model", "epochs", "batch_size", "lr", "lr_schedule", "device", "precision")
#: the preset settings over TrainConfig defaults (None in the preset: the default)
PRESET_FIELDS = ("epochs", "model", "lr", "lr_schedule")
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


def split_names(text: Optional[str]) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None or empty -> ``[]``."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def scoped_assignments(items: Sequence[str], option: str, known: Sequence[str], what: str,
                       fallback: Callable[[str], list[str]]) -> dict:
    """``SCOPE.KEY=VALUE`` -> ``{scope: {key: value}}`` for a ``scope`` among ``known`` (``what`` names them,
    plural); an unscoped ``KEY=VALUE`` goes to every scope ``fallback(key)`` lists, and to none is an error."""
    out: dict = {}
    for key, value in parse_assignments(tuple(items), option).items():
        scope, dot, name = key.partition(".")
        targets = [scope] if dot else fallback(key)
        if dot and scope not in known:
            raise UserError(f"{option} {key}={value!r}: {scope!r} is not one of the {what} of this benchmark "
                            f"({', '.join(known)})")
        if not targets:
            raise UserError(f"{option} {key}={value!r}: no {what[:-1]} of this benchmark has a parameter {key!r}")
        for target in targets:
            out.setdefault(target, {})[name if dot else key] = value
    return out


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
               methods: Optional[str] = None, seeds: Optional[int] = None, model: Optional[str] = None,
               epochs: Optional[int] = None, batch_size: Optional[int] = None, lr: Optional[float] = None,
               lr_schedule: Optional[str] = None, params: Sequence[str] = (), data_options: Sequence[str] = (),
               jobs: int = 1, threads: Optional[int] = None, device: Optional[str] = None,
               precision: Optional[str] = None) -> BenchPlan:
    """The benchmark the ``bench`` command's flags describe, writing nothing. ``data`` and ``methods`` are
    comma-separated names (default: the preset's; methods ``mask`` without a preset); ``params`` and
    ``data_options`` are ``[SCOPE.]KEY=VALUE`` strings; ``threads`` defaults to the cores over ``jobs``.
    A preset's methods that are not registered are skipped with a warning."""
    from ..methods import METHODS

    for name, value in (("seeds", seeds), ("jobs", jobs), ("threads", threads)):
        _at_least_one(name, value)
    params, data_options = _strings(params), _strings(data_options)
    chosen = preset if isinstance(preset, Preset) else get_preset(preset) if preset else None
    datasets = split_names(data) or list(chosen.datasets if chosen else [])
    if not datasets:
        raise UserError("bench: give --data (comma-separated datasets) or --preset")
    method_names = _methods(methods, chosen)
    n_seeds = seeds if seeds is not None else (chosen.seeds if chosen else DEFAULT_SEEDS)

    settings = {k: getattr(chosen, k) for k in PRESET_FIELDS} if chosen else {}
    base = TrainConfig(**{k: v for k, v in settings.items() if v is not None})
    flags = dict(zip(FLAG_FIELDS, (model, epochs, batch_size, lr, lr_schedule, device, precision)))
    base = base.replace(**{k: v for k, v in flags.items() if v is not None})

    method_params = {m: dict(v) for m, v in (chosen.params if chosen else {}).items()}
    given = scoped_assignments(params, "--param", method_names, "methods",
                               lambda key: [m for m in method_names if key in METHODS.get(m).defaults])
    for m, kv in given.items():
        method_params.setdefault(m, {}).update(kv)
    options = {d: dict(v) for d, v in (chosen.data_options if chosen else {}).items()}
    for d, kv in scoped_assignments(data_options, "--data-option", datasets, "datasets",
                                    lambda key: list(datasets)).items():
        options.setdefault(d, {}).update(kv)

    threads = threads or max(1, available_cores() // jobs)
    specs = plan_runs(out, datasets, method_names, range(n_seeds), base, method_params, options, threads)
    if chosen is not None:  # the preset's per-dataset hyperparameters (under --param) and robustness settings
        specs = chosen.refine(specs, given, flags)
    words = ["rightreasons", "bench"] + (["--preset", chosen.name] if chosen else [])
    words += ["--data", ",".join(datasets), "--methods", ",".join(method_names), "--seeds", str(n_seeds)]
    words += [w for k, v in flags.items() if v is not None for w in (f"--{k.replace('_', '-')}", str(v))]
    words += [w for p in params for w in ("--param", p)] + [w for o in data_options for w in ("--data-option", o)]
    words += ["--jobs", str(jobs), "--threads", str(threads), "--out", str(out)]
    return BenchPlan(specs=specs, command=" ".join(shlex.quote(w) for w in words), datasets=datasets,
                     methods=method_names, seeds=n_seeds, jobs=jobs, threads=threads, preset=chosen)
