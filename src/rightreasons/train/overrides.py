"""Settings given as overrides on top of a base :class:`TrainConfig`: fields that replace the base's,
and ``KEY=VALUE`` assignments merged into its method parameters, data options and model options.

The command line (``train``, ``sweep``, ``find-another``) builds every run's config this way, so a flag
means the same in every command; Python code can call :func:`apply_overrides` directly.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional

from ..errors import UserError
from .config import TrainConfig

#: TrainConfig fields that a flag of the same name (``--batch-size`` for batch_size) replaces
FIELDS = ("data", "method", "model", "epochs", "seed", "batch_size", "lr", "lr_schedule", "optimizer",
          "weight_decay", "threads", "select", "val_break", "compare_selections", "ema_decay", "device",
          "precision")


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"[1, 2]"`` -> [1, 2], anything else the string itself
    (JSON literals only: nothing is evaluated)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
    except (ValueError, RecursionError):  # an integer of thousands of digits, nesting too deep
        shown = f"{text[:40]!r}{'...' if len(text) > 40 else ''}"
        raise UserError(f"value {shown} is too large or too deeply nested") from None


def parse_assignments(items: Iterable[str] | Mapping[str, Any] | None, option: str) -> dict:
    """``["lam=10", "target=loss"]`` -> ``{"lam": 10, "target": "loss"}``; a mapping is taken as it is.
    An item without ``=`` or without a key is a one-line error naming ``option``."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = parse_value(value.strip())
        except UserError as exc:
            raise UserError(f"{option} {key.strip()}: {exc}") from None
    return out


def apply_overrides(config: TrainConfig, fields: Optional[Mapping[str, Any]] = None,
                    params: Iterable[str] | Mapping[str, Any] | None = None,
                    data_options: Iterable[str] | Mapping[str, Any] | None = None,
                    model_options: Iterable[str] | Mapping[str, Any] | None = None) -> TrainConfig:
    """``config`` with ``fields`` (TrainConfig field -> value; None = keep the base's) replaced and the
    assignments merged in. Choosing another method drops the base method's hyperparameters (they would
    not fit it). The result is validated."""
    changes = {k: v for k, v in (fields or {}).items() if v is not None}
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r}; known: {', '.join(FIELDS)}")
    if "method" in changes and changes["method"] != config.method:
        changes["params"] = {}
    config = config.replace(**changes)
    config = config.replace(
        params={**config.params, **parse_assignments(params, "--param")},
        data_options={**config.data_options, **parse_assignments(data_options, "--data-option")},
        model_options={**config.model_options, **parse_assignments(model_options, "--model-option")},
    )
    config.validate()
    return config
