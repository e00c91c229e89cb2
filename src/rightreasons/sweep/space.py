"""The search-space file: a JSON object mapping a config key to the values a sweep may try.

Keys are :class:`TrainConfig` fields (``lr``, ``weight_decay``, ``epochs``, ``batch_size``,
``optimizer``, ``model``, ``select``), method hyperparameters (``params.NAME``) or model options
(``model_options.NAME``). Each value is one of::

    {"type": "float", "low": 0.1, "high": 1000, "log": true}      # optional "step" (not with log)
    {"type": "int", "low": 5, "high": 30}                          # optional "step", "log"
    {"type": "categorical", "choices": ["log_prob_sum", "loss"]}   # str, number, bool or null

Every error is one line naming the file and the key.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..files import MAX_SETTINGS_BYTES, read_json, shown_path
from ..files import shown_value as _short
from ..train.config import TrainConfig

#: searchable TrainConfig fields -> the distribution types they accept
FIELDS = {"lr": ("float",), "weight_decay": ("float",), "epochs": ("int",), "batch_size": ("int",),
          "optimizer": ("categorical",), "model": ("categorical",), "select": ("categorical",)}
PREFIXES = ("params.", "model_options.")
#: fixed for a whole study (the data, its cache, the seed and the objective depend on them)
FIXED = ("data", "data_options", "method", "seed", "threads", "on_nonfinite")
#: integer bounds and steps are in (-INT_LIMIT, INT_LIMIT)
INT_LIMIT = 2**62
SETTINGS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
            "categorical": ("type", "choices")}


@dataclass(frozen=True)
class Dimension:
    """One searched key and its distribution."""

    key: str
    kind: str
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for this key's value."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.key, list(self.choices))

    def to_dict(self) -> dict:
        if self.kind == "categorical":
            return {"type": self.kind, "choices": list(self.choices)}
        out = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        return out if self.step is None else {**out, "step": self.step}


def _number(where: str, key: str, spec: dict, name: str, kind: str, required: bool = True):
    value = spec.get(name)
    if value is None and not required:
        return None
    if value is None:
        raise UserError(f"{where}: key {key!r}: missing {name!r}")
    ok = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
    if isinstance(value, int) and not -INT_LIMIT < value < INT_LIMIT:  # also too large to convert to float
        raise UserError(f"{where}: key {key!r}: {name} must be of magnitude below 2**62, got {_short(value)}")
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        raise UserError(f"{where}: key {key!r}: {name} must be a finite {'integer' if kind == 'int' else 'number'}, "
                        f"got {_short(value)}")
    return float(value) if kind == "float" else value


def _check_key(where: str, key: Any) -> None:
    if not isinstance(key, str):
        raise UserError(f"{where}: key {key!r} must be a string")
    head = key.split(".", 1)[0]
    if head in FIXED:
        raise UserError(f"{where}: key {key!r}: {head} is fixed for a whole sweep "
                        f"(set it with --{head.replace('_', '-')} or --config), not searched")
    if key in FIELDS or (key.startswith(PREFIXES) and key.split(".", 1)[1]):
        return
    raise UserError(f"{where}: unknown key {key!r}; searchable: {', '.join(FIELDS)}, params.NAME, model_options.NAME")


def _check_field(where: str, key: str, name: str, value: Any) -> None:
    """Refuse a value the config field ``key`` never takes (its own limits: lr in (0, 10], epochs at most
    100000, an optimizer it knows, ...), before any trial runs."""
    try:
        TrainConfig(**{key: value})
    except UserError as exc:
        raise UserError(f"{where}: key {key!r}: value {_short(value)} is not allowed ({name}: {exc})") from None


def parse_dimension(where: str, key: str, spec: Any) -> Dimension:
    """One key's distribution, checked for shape (not yet against a method or config)."""
    _check_key(where, key)
    if not isinstance(spec, dict):
        raise UserError(f"{where}: key {key!r}: expected an object like {{\"type\": \"float\", \"low\": ..., "
                        f"\"high\": ...}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in SETTINGS:
        raise UserError(f"{where}: key {key!r}: type must be one of {', '.join(SETTINGS)}, got {kind!r}")
    unknown = sorted(set(spec) - set(SETTINGS[kind]))
    if unknown:
        raise UserError(f"{where}: key {key!r}: unknown setting {unknown[0]!r} for type {kind}; "
                        f"known: {', '.join(SETTINGS[kind])}")
    if key in FIELDS and kind not in FIELDS[key]:
        raise UserError(f"{where}: key {key!r}: type must be {' or '.join(FIELDS[key])}, got {kind}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}: key {key!r}: choices must be a non-empty list, got {choices!r}")
        for choice in choices:
            if choice is not None and not isinstance(choice, (str, int, float, bool)):
                raise UserError(f"{where}: key {key!r}: choice {_short(choice)} is not a string, number, bool or null")
            if isinstance(choice, float) and math.isnan(choice):
                raise UserError(f"{where}: key {key!r}: choice NaN is not a value")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise UserError(f"{where}: key {key!r}: choices contain duplicates")
        for choice in choices if key in FIELDS else ():
            _check_field(where, key, "choice", choice)
        return Dimension(key, kind, choices=tuple(choices))
    low, high = _number(where, key, spec, "low", kind), _number(where, key, spec, "high", kind)
    if low > high:
        raise UserError(f"{where}: key {key!r}: low {low} > high {high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"{where}: key {key!r}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise UserError(f"{where}: key {key!r}: log scale needs low > 0, got {low}")
    step = _number(where, key, spec, "step", kind, required=False)
    if step is not None and step <= 0:
        raise UserError(f"{where}: key {key!r}: step must be > 0, got {step}")
    if step is not None and log and (kind == "float" or step != 1):
        raise UserError(f"{where}: key {key!r}: step and log cannot be combined "
                        f"{'for a float' if kind == 'float' else 'for an int unless step is 1'}")
    if step is not None and step > high - low and high > low:
        raise UserError(f"{where}: key {key!r}: step {step} is larger than the range [{low}, {high}]")
    for name, value in (("low", low), ("high", high)) if key in FIELDS else ():
        _check_field(where, key, name, value)
    return Dimension(key, kind, low, high, log, step)


def parse_space(raw: Any, where: str = "space") -> list[Dimension]:
    """A list of :class:`Dimension` from the decoded JSON object."""
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{where}: expected a non-empty JSON object mapping keys to distributions")
    return [parse_dimension(where, key, spec) for key, spec in raw.items()]


def load_space(path: str | Path) -> list[Dimension]:
    """The search space in the JSON file ``path``."""
    return parse_space(read_json(path, "search space", MAX_SETTINGS_BYTES), where=shown_path(path))


def base_value(base: TrainConfig, key: str) -> Any:
    """The value ``key`` has in the (resolved) base config: the baseline trial's value."""
    head, _, name = key.partition(".")
    if head == "params":
        from ..methods import METHODS

        cls = METHODS.get(base.method)
        if name not in cls.defaults:
            known = ", ".join(sorted(cls.defaults)) or "none"
            raise UserError(f"method {base.method!r} has no parameter {name!r}; its parameters: {known}")
        return base.params.get(name, cls.defaults[name])
    if head == "model_options":
        if name in base.model_options:
            return base.model_options[name]
        from ..models import MODELS

        if ":" in base.model:
            raise UserError(f"set model option {name!r} in the base config (--model-option) to search it "
                            f"for a custom model")
        parameter = inspect.signature(MODELS.get(base.model)).parameters.get(name)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            raise UserError(f"model {base.model!r} has no option {name!r} with a default")
        return parameter.default
    return getattr(base, key)


def apply(base: TrainConfig, values: dict) -> TrainConfig:
    """``base`` with the searched ``values`` (keyed like the space) filled in."""
    fields, params, options = {}, dict(base.params), dict(base.model_options)
    for key, value in values.items():
        head, _, name = key.partition(".")
        if head == "params":
            params[name] = value
        elif head == "model_options":
            options[name] = value
        else:
            fields[key] = value
    return base.replace(**fields, params=params, model_options=options)


def check_space(space: list[Dimension], base: TrainConfig, where: str = "space") -> dict:
    """Check every key against the base config and its method (names, types, allowed values and
    bounds); returns the baseline values (the base config's, which the first trial runs)."""
    from ..methods import create_method
    from ..models import MODELS

    baseline = {}
    for dim in space:
        try:
            value = base_value(base, dim.key)
        except UserError as exc:
            raise UserError(f"{where}: key {dim.key!r}: {exc}") from None
        expected = {bool: ("categorical",), int: ("int", "categorical"), float: ("float", "categorical")}.get(
            type(value), ("categorical",))
        if dim.kind not in expected:
            raise UserError(f"{where}: key {dim.key!r}: type {dim.kind} does not fit the base value {value!r} "
                            f"({type(value).__name__}); use {' or '.join(expected)}")
        if dim.kind == "categorical" and value not in dim.choices:
            raise UserError(f"{where}: key {dim.key!r}: choices must include the base value {value!r} "
                            "(the first trial runs the base config)")
        candidates = list(dim.choices) if dim.kind == "categorical" else [dim.low, dim.high]
        for candidate in candidates:
            try:
                config = apply(base, {dim.key: candidate})
                if dim.key.startswith("params."):
                    create_method(config.method, **config.params)
                elif dim.key == "model" and ":" not in str(candidate):
                    MODELS.get(candidate)
            except UserError as exc:
                raise UserError(f"{where}: key {dim.key!r}: value {candidate!r} is not allowed ({exc})") from None
        baseline[dim.key] = float(value) if dim.kind == "float" else value
    return baseline
