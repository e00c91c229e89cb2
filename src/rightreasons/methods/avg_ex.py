"""Avg-Ex (Heo, Piratla, Wicker & Weller, NeurIPS 2023): the robust objective with the inner maximum
replaced by a Monte-Carlo average over random perturbations inside the mask.

    loss = CE(f(x), y) + alpha * mean_n [ a_n * mean_s CE(f(x_n + m_n * u_ns), y_n) ]

u is uniform in [-eps, eps] (``noise="uniform"``) or Gaussian with standard deviation eps
(``noise="gaussian"``); a_n = 1 if example n has a non-empty (annotated) mask, else 0: an example
without a box has nothing to be robust to, so with m = 0 everywhere the loss is ERM's exactly.
Noise comes from ``ctx.generator`` only.

Parameters: ``alpha`` (1.0), ``eps`` (1.0, inputs in [0, 1]), ``samples`` (1), ``noise`` ("uniform").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..devices import rand_like
from ..errors import UserError
from .base import Method, StepContext
from .registry import register_method


def annotated(mask: torch.Tensor) -> torch.Tensor:
    """(B,) float: 1 where the example's (effective, non-negative) mask has any non-zero entry."""
    flat = mask.flatten(1)
    return (flat.sum(1) > 0).to(mask.dtype) if mask.is_floating_point() else flat.any(1).float()


def explanation_mask(batch) -> torch.Tensor:
    """``batch.effective_mask`` without a copy when every example is annotated."""
    return batch.mask if bool(batch.has_mask.all()) else batch.effective_mask


def require_generator(method: str, ctx: StepContext) -> torch.Generator:
    if ctx.generator is None:
        raise UserError(f"method {method!r} draws random numbers: pass a torch.Generator as StepContext.generator")
    return ctx.generator


@register_method
class AvgEx(Method):
    """CE + alpha * CE averaged over random perturbations x + m * u, |u| <= eps (Heo et al. 2023)."""

    name = "avg_ex"
    paper = "Heo, Piratla, Wicker & Weller, NeurIPS 2023"
    defaults = {"alpha": 1.0, "eps": 1.0, "samples": 1, "noise": "uniform"}
    choices = {"noise": ("uniform", "gaussian")}
    bounds = {"alpha": (0.0, None), "eps": (0.0, None), "samples": (1, None)}

    def penalties(self, model, batch, x, logits, ctx):
        mask = explanation_mask(batch)
        weight = annotated(mask)
        if self.alpha == 0 or self.eps == 0 or not bool(weight.any()):
            return {"avg_ex": logits.new_zeros(())}
        gen = require_generator(self.name, ctx)
        base = batch.x.detach()
        shape = (self.samples,) + tuple(base.shape)
        buffer = base.new_empty(shape)
        if self.noise == "uniform":  # in place on one buffer: u = (2 * U(0, 1) - 1) * eps
            noisy = rand_like(buffer, gen).mul_(2).sub_(1)
        else:
            noisy = rand_like(buffer, gen, normal=True)
        noisy = noisy.mul_(self.eps).mul_(mask).add_(base).flatten(0, 1)  # x + m * u
        ce = F.cross_entropy(model(noisy), batch.y.repeat(self.samples), reduction="none")
        ce = ce.view(self.samples, -1).mean(0)
        return {"avg_ex": self.alpha * (weight * ce).mean()}
