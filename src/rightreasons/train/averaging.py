"""Weight averaging: an exponential moving average (EMA) of the weights, evaluated and kept instead of them.

After every optimiser step, for every floating-point parameter and buffer w of the model,

    avg <- d_t * avg + (1 - d_t) * w,        d_t = min(decay, (1 + t) / (10 + t)),

where t counts the updates before this one; the average starts as a copy of the weights after the first
step, and integer buffers (BatchNorm's batch counter) are copied rather than averaged. The warm-up of d_t
(TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``) keeps the average from holding on to the
first steps' weights for the ~1 / (1 - decay) steps its window spans. BatchNorm's running statistics are
averaged like the weights. Training itself is unchanged: the average only reads the weights, and is
evaluated by loading it into the model for the duration of a ``with`` block (:meth:`WeightAverage.applied`).

Averaging the iterates: Polyak & Juditsky, Acceleration of stochastic approximation by averaging, SIAM J.
Control Optim. 1992; in deep learning e.g. Izmailov et al., Averaging weights leads to wider optima and better
generalization, UAI 2018 (its uniform variant, SWA).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import nn

#: the warm-up of the decay: d_t = min(decay, (1 + t) / (WARMUP + t))
WARMUP = 10


def decay_at(decay: float, updates: int) -> float:
    """The decay of the update that follows ``updates`` earlier ones: min(decay, (1 + t) / (10 + t))."""
    return min(decay, (1.0 + updates) / (WARMUP + updates))


def _copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


class WeightAverage:
    """The running average of a model's weights (its state dict) with ``decay`` in (0, 1)."""

    def __init__(self, decay: float):
        self.decay = decay
        self.updates = 0
        self.weights: Optional[dict[str, torch.Tensor]] = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights into the average (the first call copies them)."""
        current = model.state_dict()
        if self.weights is None:
            self.weights = _copy(current)
        else:
            weight = 1.0 - decay_at(self.decay, self.updates)
            for name, avg in self.weights.items():
                if avg.is_floating_point():
                    avg.lerp_(current[name].to(avg.dtype), weight)
                else:
                    avg.copy_(current[name])
        self.updates += 1

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block ``model`` holds the averaged weights (its own ones when nothing was averaged yet);
        its own weights are back afterwards, also after an exception."""
        if self.weights is None:
            yield model
            return
        own = _copy(model.state_dict())
        model.load_state_dict(self.weights)
        try:
            yield model
        finally:
            model.load_state_dict(own)

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the number of updates and the averaged weights (on the CPU)."""
        weights = {k: v.detach().cpu().clone() for k, v in (self.weights or {}).items()}
        return {"updates": self.updates, "weights": weights}

    def load_state_dict(self, state: dict, model: nn.Module) -> None:
        """Restore a :meth:`state_dict` for ``model`` (the averaged tensors go to its tensors' devices)."""
        self.updates = int(state["updates"])
        current = model.state_dict()
        self.weights = ({k: v.to(device=current[k].device, dtype=current[k].dtype).clone()
                         for k, v in state["weights"].items()} if self.updates else None)
