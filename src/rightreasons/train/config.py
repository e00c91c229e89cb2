"""The fully resolved description of a training run, as written to ``config.json`` and read back by
``rightreasons train --config``. Unknown keys and wrong types are rejected with the field named."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import UserError
from ..files import read_json

OPTIMIZERS = ("adam", "adamw", "sgd")
SELECTIONS = ("last", "val_accuracy", "val_worst_group_accuracy")
ON_NONFINITE = ("stop", "skip")
LR_SCHEDULES = ("constant", "cosine")
AUTO_MODEL = "auto"


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
    #: which epoch's weights to keep: the last one, or the best on the validation split (never test)
    select: str = "last"
    #: torch intra-op threads; None = OMP_NUM_THREADS if set, else the cores this process may use
    threads: Optional[int] = None
    #: what a NaN/inf loss does: stop training (naming step and term) or skip that batch
    on_nonfinite: str = "stop"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = {"str": str, "int": int, "float": float, "dict": dict}.get(str(f.type).split("[")[0])
            if f.name in ("threads", "epochs", "batch_size"):
                if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                    raise UserError(f"config field {f.name!r} must be a positive integer or null, got {value!r}")
                continue
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if kind is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise UserError(f"config field {f.name!r} must be {kind.__name__}, got {value!r}")
        if not self.lr > 0:
            raise UserError(f"config field 'lr' must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise UserError(f"config field 'weight_decay' must be >= 0, got {self.weight_decay}")
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
        return cls.from_dict(read_json(path, "config"), where=str(path))

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
