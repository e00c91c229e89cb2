"""Small schedule objects for training hyperparameters (eps ramps, CE weights), Gowal et al. style.

Gowal et al. (ICCV 2019, "On the effectiveness of interval bound propagation") keep eps = 0 for a
warm-up, then ramp it linearly to its final value while the clean-CE weight kappa goes 1 -> kappa_end
over the same window. A schedule is a pure function of training progress plus the position it was
last advanced to; that position is its state (``state_dict`` / ``load_state_dict``) so checkpoints
can save it. Progress is measured in epochs; ``fraction`` (0 <= fraction < 1, the share of the
current epoch already done) makes the ramp smooth within an epoch when the caller knows it.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UserError


class Schedule:
    """Base class: ``value(epoch, fraction=0.0)``; ``set_epoch`` advances; ``current`` reads."""

    def __init__(self) -> None:
        self.epoch = 0

    def value(self, epoch: float, fraction: float = 0.0) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def current(self, fraction: float = 0.0) -> float:
        """The value at the epoch this schedule was last advanced to."""
        return self.value(self.epoch, fraction)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = sorted(set(state) - {"epoch"})
        if unknown or "epoch" not in state:
            raise UserError(f"{type(self).__name__} state must have exactly the key 'epoch', got {sorted(state)}")
        self.set_epoch(int(state["epoch"]))


class Constant(Schedule):
    """Always ``value``."""

    def __init__(self, value: float):
        super().__init__()
        self.constant = float(value)

    def value(self, epoch: float, fraction: float = 0.0) -> float:
        return self.constant

    def __repr__(self) -> str:
        return f"Constant({self.constant})"


class LinearRamp(Schedule):
    """``start`` for ``warmup_epochs`` epochs, then linear to ``end`` over ``ramp_epochs``, then ``end``.

    With per-epoch granularity the value at epoch e is start + (end - start) * min(1, (e - warmup) / ramp)
    (clamped at 0 below), so epoch ``warmup_epochs`` still uses ``start`` and the ramp reaches ``end``
    at epoch ``warmup_epochs + ramp_epochs``. ``ramp_epochs = 0`` jumps to ``end`` after the warm-up.
    """

    def __init__(self, start: float, end: float, warmup_epochs: float = 0, ramp_epochs: float = 0):
        super().__init__()
        for name, v in (("start", start), ("end", end), ("warmup_epochs", warmup_epochs), ("ramp_epochs", ramp_epochs)):
            if not math.isfinite(float(v)):
                raise UserError(f"LinearRamp: {name} must be finite, got {v!r}")
        if warmup_epochs < 0 or ramp_epochs < 0:
            raise UserError(f"LinearRamp: warmup_epochs={warmup_epochs} and ramp_epochs={ramp_epochs} must be >= 0")
        self.start, self.end = float(start), float(end)
        self.warmup_epochs, self.ramp_epochs = float(warmup_epochs), float(ramp_epochs)

    def progress(self, epoch: float, fraction: float = 0.0) -> float:
        """Share of the ramp done at this point, in [0, 1]."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        t = float(epoch) + float(fraction) - self.warmup_epochs
        if t <= 0:
            return 0.0 if self.ramp_epochs > 0 or t < 0 else 1.0
        return 1.0 if self.ramp_epochs == 0 else min(1.0, t / self.ramp_epochs)

    def value(self, epoch: float, fraction: float = 0.0) -> float:
        p = self.progress(epoch, fraction)
        if p >= 1.0:
            return self.end
        if p <= 0.0:
            return self.start
        return self.start + (self.end - self.start) * p

    def __repr__(self) -> str:
        return f"LinearRamp({self.start} -> {self.end}, warmup={self.warmup_epochs:g}, ramp={self.ramp_epochs:g})"


def eps_ramp(eps: float, warmup_epochs: float = 0, ramp_epochs: float = 0) -> LinearRamp:
    """The perturbation radius: 0 during the warm-up, then linearly to ``eps``."""
    return LinearRamp(0.0, eps, warmup_epochs, ramp_epochs)


def ce_weight_schedule(kappa_end: float = 0.5, warmup_epochs: float = 0, ramp_epochs: float = 0) -> LinearRamp:
    """Gowal et al.'s clean-CE weight kappa: 1 during the warm-up, then linearly to ``kappa_end``."""
    if not 0.0 <= kappa_end <= 1.0:
        raise UserError(f"kappa_end must be in [0, 1], got {kappa_end}")
    return LinearRamp(1.0, kappa_end, warmup_epochs, ramp_epochs)
