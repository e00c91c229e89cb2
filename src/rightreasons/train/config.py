"""The fully resolved description of a training run, as written to ``config.json`` and read back by
``rightreasons train --config``. Unknown keys and wrong types are rejected with the field named."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..devices import check_device_name
from ..errors import UserError
from ..files import MAX_SETTINGS_BYTES, read_json, shown_path
from ..files import shown_value as _short
from ..precision import PRECISIONS

OPTIMIZERS = ("adam", "adamw", "sgd")
SELECTIONS = ("last", "val_accuracy", "val_worst_group_accuracy", "val_broken_accuracy",
              "val_broken_worst_group_accuracy")
ON_NONFINITE = ("stop", "skip")
LR_SCHEDULES = ("constant", "cosine")
AUTO_MODEL = "auto"
#: the largest learning rate accepted (anything above diverges for every method and model here)
LR_MAX = 10.0
WEIGHT_DECAY_MAX = 1.0
#: seeds are in [0, SEED_LIMIT) (what torch and numpy generators take)
SEED_LIMIT = 2**62
#: the integer fields that may be None (the dataset's default / the machine's) and their largest values
COUNT_LIMITS = {"epochs": 100_000, "batch_size": 2**24, "threads": 1024}
#: how deeply data_options, model_options and params may nest lists and objects
MAX_NESTING = 32
#: the keys of the ``robustness`` field: (kind, smallest, largest) of each (see ``check_robustness``)
ROBUSTNESS_KEYS = {
    "eps": ("radius", 0.0, None),
    "examples": ("int", 1, 10**7),
    "pgd_steps": ("int", 0, 100_000),
    "attack_steps": ("int", 0, 100_000),
    "step_size": ("positive", 0.0, None),
    "k": ("int", 1, 10**7),
    "attack_k": ("int", 1, 10**7),
    "ig_steps": ("int", 1, 10_000),
    "restarts": ("int", 1, 1000),
    "region": ("choice", ("all", "mask"), None),
}


def check_robustness(value: Any, method: str, params: dict) -> Optional[dict]:
    """The ``robustness`` field validated: None, or an object whose keys are among ROBUSTNESS_KEYS with
    counts whole numbers in range, ``step_size`` a finite number > 0, ``eps`` a finite number >= 0 or None
    (the run's training radius, its method's ``eps``: an error for a method without one) and ``region``
    all or mask. Returns a copy with integer radii and step sizes as floats. One-line errors name
    ``robustness.<key>``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(f"config field 'robustness' must be an object of settings or null, got {_short(value)}")
    out = {}
    for key, item in value.items():
        if key not in ROBUSTNESS_KEYS:
            raise UserError(f"config field 'robustness': unknown key {_short(key)}; known: "
                            f"{', '.join(ROBUSTNESS_KEYS)}")
        kind, low, high = ROBUSTNESS_KEYS[key]
        name = f"robustness.{key}"
        number = isinstance(item, (int, float)) and not isinstance(item, bool)
        if kind == "choice":
            if item not in low:
                raise UserError(f"config field {name!r} must be one of {', '.join(low)}, got {_short(item)}")
        elif kind == "int":
            if not isinstance(item, int) or isinstance(item, bool) or not low <= item <= high:
                raise UserError(f"config field {name!r} must be a whole number in [{low}, {high}], got {_short(item)}")
        elif item is None and kind == "radius":
            pass
        elif not number or not math.isfinite(float(item)) or (item <= low if kind == "positive" else item < low):
            what = "a finite number > 0" if kind == "positive" else "a finite number >= 0 or null (the training radius)"
            raise UserError(f"config field {name!r} must be {what}, got {_short(item)}")
        else:
            item = float(item)
        out[key] = item
    if out.get("eps") is None:
        from ..metrics.robustness import training_eps

        if training_eps(method, params) is None:
            raise UserError(f"config field 'robustness.eps': method {method!r} has no eps parameter to take the "
                            "radius from; give robustness.eps")
    return out


def check_augment(value: Any) -> None:
    """The ``augment`` field: None or an object of augmentation options (``data.augment``), validated."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise UserError(f"config field 'augment' must be an object of augmentation options (e.g. "
                        f"{{\"preset\": \"standard\"}}) or null, got {_short(value)}")
    from ..data.augment import create_augmentation

    try:
        create_augmentation(value)
    except UserError as exc:
        raise UserError(f"config field 'augment': {exc}") from None


def _check_options(name: str, options: dict) -> None:
    """Keys are strings; no NaN at any depth (it never means a setting); at most MAX_NESTING levels."""
    stack = [(options, name, 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_NESTING:
            raise UserError(f"config field {name!r} is nested more than {MAX_NESTING} levels deep (at {where})")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise UserError(f"config field {name!r}: key {_short(key)} must be a string")
                stack.append((item, f"{where}[{_short(key)}]", depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float) and math.isnan(value):
            raise UserError(f"config field {name!r}: {where} is NaN, which is not a setting")


@dataclass
class TrainConfig:
    """Everything that determines a run. Defaults are the ones the README's results use."""

    data: str = "decoy-mnist"
    data_options: dict = field(default_factory=dict)
    #: a model name, ``package.module:factory``, or "auto": the dataset's default model (``mlp``, but
    #: ``cnn-strided`` for decoy-mnist-half); run directories record the resolved name
    model: str = "auto"
    model_options: dict = field(default_factory=dict)
    method: str = "rrr"
    params: dict = field(default_factory=dict)
    #: None: the dataset's default (15, but 20 for decoy-mnist-half); run directories record the number
    epochs: Optional[int] = None
    #: None: the dataset's default (256, but 64 for decoy-mnist-half); run directories record the number
    batch_size: Optional[int] = None
    lr: float = 3e-3
    #: learning rate over training: constant, or cosine decay from lr to 0 over all steps (per step)
    lr_schedule: str = "cosine"
    optimizer: str = "adam"
    weight_decay: float = 0.0
    seed: int = 0
    #: which epoch's weights to keep: the last one, or the best on the validation split (never test), or the
    #: best on the validation split with the shortcut broken in its masked regions (``val_broken_*``)
    select: str = "last"
    #: how ``val_broken_*`` breaks the shortcut: random values (words) or another class's content in the mask
    val_break: str = "random"
    #: also record, per epoch, what every selection rule reads (the validation split, and it with the shortcut
    #: broken when it has masks) and the test split's accuracy, and report in metrics.json which epoch each rule
    #: would keep and its test scores (``train.selection``); the kept model is still ``select``'s
    compare_selections: bool = False
    #: None: evaluate and keep the weights themselves; a decay in (0, 1): their exponential moving average over
    #: the optimiser steps (``train.averaging``), evaluated every epoch and kept instead
    ema_decay: Optional[float] = None
    #: torch intra-op threads; None = OMP_NUM_THREADS if set, else the cores this process may use
    threads: Optional[int] = None
    #: what a NaN/inf loss does: stop training (naming step and term) or skip that batch
    on_nonfinite: str = "stop"
    #: None: no robustness evaluation; else settings of ``metrics.robustness.robustness_report`` on the test split
    #: (keys: ROBUSTNESS_KEYS; eps None or absent = the method's training radius), stored in metrics.json as
    #: ``test.robustness``
    robustness: Optional[dict] = None
    #: where to train: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps
    device: str = "auto"
    #: fp32, or the loss under bf16 / fp16 autocast (fp16 with loss scaling), see ``rightreasons.precision``
    precision: str = "fp32"
    #: None: no augmentation; else the options of ``data.augment`` (a "preset" key and overrides), applied to
    #: every training batch, image and mask together, seeded from ``seed``
    augment: Optional[dict] = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Refuse, in one line naming the field, a value of the wrong type or one that cannot train: every
        number finite, ``lr`` in (0, LR_MAX], ``weight_decay`` in [0, WEIGHT_DECAY_MAX], ``seed`` in
        [0, SEED_LIMIT), counts in [1, COUNT_LIMITS[name]] (or None), never a bool for a number; no NaN
        anywhere in the option dictionaries (infinities there are for their readers to judge)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = {"str": str, "int": int, "float": float, "dict": dict}.get(str(f.type).split("[")[0])
            if f.name in COUNT_LIMITS:
                limit = COUNT_LIMITS[f.name]
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                          or not 1 <= value <= limit):
                    raise UserError(f"config field {f.name!r} must be a positive integer or null, got {_short(value)}"
                                    f" (at most {limit})")
                continue
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                try:
                    value = float(value)
                except OverflowError:
                    raise UserError(f"config field {f.name!r} must be a finite number, got an integer too large "
                                    f"for a float ({_short(value, 40)})") from None
                setattr(self, f.name, value)
            if kind is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise UserError(f"config field {f.name!r} must be {kind.__name__}, got {_short(value)}")
            if kind is float and not math.isfinite(value):
                raise UserError(f"config field {f.name!r} must be a finite number, got {value!r}")
            if kind is dict:
                _check_options(f.name, value)
        if not 0 < self.lr <= LR_MAX:
            raise UserError(f"config field 'lr' must be > 0 and at most {LR_MAX:g} (larger learning rates only "
                            f"diverge), got {self.lr!r}")
        if not 0 <= self.weight_decay <= WEIGHT_DECAY_MAX:
            raise UserError(f"config field 'weight_decay' must be >= 0 and at most {WEIGHT_DECAY_MAX:g}, "
                            f"got {self.weight_decay!r}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise UserError(f"config field 'seed' must be an integer in [0, 2**62), got {_short(self.seed)}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"config field 'optimizer' must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"config field 'lr_schedule' must be one of {', '.join(LR_SCHEDULES)}, "
                            f"got {self.lr_schedule!r}")
        if self.on_nonfinite not in ON_NONFINITE:
            raise UserError(f"config field 'on_nonfinite' must be one of {', '.join(ON_NONFINITE)}, "
                            f"got {self.on_nonfinite!r}")
        if self.select not in SELECTIONS:
            raise UserError(f"config field 'select' must be one of {', '.join(SELECTIONS)}, got {self.select!r}")
        if self.val_break not in ("random", "swap"):
            raise UserError(f"config field 'val_break' must be random or swap, got {self.val_break!r}")
        if not isinstance(self.compare_selections, bool):
            raise UserError(f"config field 'compare_selections' must be true or false, "
                            f"got {_short(self.compare_selections)}")
        if self.ema_decay is not None and (isinstance(self.ema_decay, bool)
                                           or not isinstance(self.ema_decay, (int, float))
                                           or not 0 < self.ema_decay < 1):
            raise UserError(f"config field 'ema_decay' must be a number in (0, 1) or null, "
                            f"got {_short(self.ema_decay)}")
        if self.ema_decay is not None:
            self.ema_decay = float(self.ema_decay)
        if self.precision not in PRECISIONS:
            raise UserError(f"config field 'precision' must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        try:
            check_device_name(self.device)
        except UserError as exc:
            raise UserError(f"config field 'device': {exc}") from None
        check_augment(self.augment)
        self.robustness = check_robustness(self.robustness, self.method, self.params)

    def model_name(self) -> str:
        """The model to build: ``model``, with "auto" replaced by the dataset's default model (its split
    version for a method that needs a split model)."""
        if self.model != AUTO_MODEL:
            return self.model
        from ..data import default_model
        from ..methods import METHODS
        from ..models import split_version

        model = default_model(self.data)
        return split_version(model) if METHODS.get(self.method).needs_split_model else model

    def epoch_count(self) -> int:
        """The epochs to train: ``epochs``, or the dataset's default when it is None."""
        if self.epochs is not None:
            return self.epochs
        from ..data import default_epochs

        return default_epochs(self.data)

    def batch_size_used(self) -> int:
        """The training batch size: ``batch_size``, or the dataset's default when it is None."""
        if self.batch_size is not None:
            return self.batch_size
        from ..data import default_batch_size

        return default_batch_size(self.data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, where: str = "config") -> "TrainConfig":
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UserError(f"{where}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(known))}")
        try:
            return cls(**raw)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(read_json(path, "config", MAX_SETTINGS_BYTES), where=shown_path(path))

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def with_field_defaults(saved: dict) -> dict:
    """A config dictionary as written by any version: the fields it lacks (added to TrainConfig since it was
    written) filled in with their defaults, which is what that run had."""
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(TrainConfig)}
    return {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
