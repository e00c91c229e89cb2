"""The verifiers of each dataset prefix (:func:`register_verifier`, or a loader module's ``verify_files``) and
:func:`verify_dataset`, which runs one and then, on a copy without problems, the loader itself."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

from ...errors import DataError, UserError
from .. import registry
from ..csv_common import SPLIT_NAMES
from .report import Verification

#: options that never change what is read or how it is split (left out of manifests and comparisons)
RUNTIME_OPTIONS = ("stream", "workers", "cache")
#: options naming a directory of this machine (left out of manifests; their files are keyed by a root label)
PATH_OPTIONS = ("segmentations",)

VERIFIERS: dict[str, dict] = {}


def register_verifier(name: str, cheap_load: bool = True):
    """Decorator: ``fn(v: Verification) -> None`` verifies ``name:PATH``. ``cheap_load``: the loader's
    ``stream=true`` path decodes nothing, so it runs after every verification (else only with decode)."""

    def add(fn):
        VERIFIERS[name] = {"fn": fn, "cheap_load": cheap_load}
        return fn

    return add


def verifier_for(name: str) -> tuple[Optional[Callable], bool]:
    """(verifier or None, cheap_load) of the dataset prefix ``name`` (a registered ``PREFIX:PATH`` loader)."""
    datasets = registry.PATH_DATASETS
    if name not in datasets:
        raise UserError(f"unknown downloaded dataset {name!r}; known: {', '.join(sorted(datasets))}")
    if name in VERIFIERS:
        return VERIFIERS[name]["fn"], VERIFIERS[name]["cheap_load"]
    module = sys.modules.get(getattr(datasets[name], "__module__", ""), None)
    fn = getattr(module, "verify_files", None)
    return (fn, getattr(module, "VERIFY_CHEAP_LOAD", True)) if callable(fn) else (None, True)


def verify_dataset(name: str, path, seed: int = 0, options: Optional[dict] = None, decode: bool = False,
                   load: bool = True) -> Verification:
    """Verify the copy of dataset ``name`` (isic, plant, cub, waterbirds, ...) at ``path`` with the loader
    ``options``: every problem collected (see the package docstring). Option errors are UserErrors."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"verify: seed must be a non-negative integer, got {seed!r}")
    options = dict(options or {})
    v = Verification(name, Path(path), seed, options, decode)
    fn, cheap_load = verifier_for(name)
    if fn is None:
        v.notes.append(f"{name} has no verifier of its own: the loader ran, and it stops at its first problem")
        _load(v, compare=False)
        return v
    fn(v)
    if load and v.ok and (cheap_load or decode):
        _load(v, compare=True)
    return v


def _load(v: Verification, compare: bool) -> None:
    """Run the loader and, with ``compare`` (a verifier's image loaders, run with stream=true), check that its
    splits hold the verifier's images; without, it runs with the options as given."""
    options = {k: val for k, val in v.options.items() if k not in RUNTIME_OPTIONS} if compare else dict(v.options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = registry.load_dataset(v.spec, seed=v.seed, **({"stream": True} if compare else {}), **options)
        except DataError as exc:
            v.loaded = False
            v.problem("loader", v.spec, str(exc))
            return
    v.notes += [str(w.message) for w in caught]
    v.loaded = True
    if not compare:
        return
    real = {os.path.realpath(p): k for k, p in v.files.items()}
    for s in SPLIT_NAMES:
        part = data.split(s)
        decoder, rows = getattr(part, "decoder", None), getattr(part, "rows", None)
        if decoder is None or rows is None:
            continue
        got = [real.get(os.path.realpath(decoder.examples[int(j)][0]), decoder.examples[int(j)][0]) for j in rows]
        if got != v.splits[s]:  # a verifier that does not follow its loader: a bug, reported
            diff = next((k for k in got if k not in v.splits[s]), None) or next(
                (k for k in v.splits[s] if k not in got), None) or "the order"
            v.loaded = False
            v.problem("loader", v.spec, f"the loader's {s} split ({len(got)} images) differs from the verifier's "
                                        f"({len(v.splits[s])} images), e.g. at {diff}")
