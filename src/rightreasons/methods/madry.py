"""PGD adversarial training (Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018, "Towards Deep Learning
Models Resistant to Adversarial Attacks").

    loss  = CE(f(x_adv), y),
    x_adv = argmax_{|x' - x| <= eps, x' in [clip_min, clip_max]} CE(f(x'), y)   (sign-gradient PGD)

The whole input may move (no mask): this is the l_inf robustness baseline of Chen et al.'s
comparison, and IG-SUM-NORM with beta = 0. The attack is ``ops.masked_pgd`` with a mask of ones (run in
eval mode, mode restored); it starts at a uniform random point of the clipped ball (``random_start``,
drawn from ``ctx.generator``) and takes ``steps`` signed steps of ``step_size``. The adversarial CE is then
computed in the model's own mode. The returned logits are the clean ones, f(x); the terms log the clean
CE (``ce``) and the CE at x_adv (``ce_adv``). With eps = 0 the loss is ERM's CE exactly.

Parameters: ``eps`` (0.1, in the data's units), ``steps`` (10), ``step_size`` (0 = 2.5 * eps / steps,
Madry et al., following the eps ramp), ``random_start`` (True), ``clip_min`` / ``clip_max`` (None: the
training data's ``input_range``, [0, 1] for the built-in image datasets; -inf / inf: no clamp),
``warmup_epochs`` / ``ramp_epochs`` (0, 0: constant eps; otherwise eps is 0 for the warm-up, then grows
linearly to ``eps``, per epoch, saved by ``state_dict``, as is common for large radii). Madry et al.'s
MNIST settings are eps 0.3, 40 steps of 0.01 with a random start.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..ops.masked_pgd import masked_pgd
from .avg_ex import require_generator
from .base import LossOutput, Method, attached, check_clip_order, clip_range, context
from .eps_ramp import RAMP_BOUNDS, RAMP_DEFAULTS, RampedEps
from .registry import register_method


@register_method
class Madry(RampedEps, Method):
    """CE at the whole-input l_inf PGD adversary (Madry et al. 2018)."""

    name = "madry"
    paper = "Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018"
    uses_mask = False
    composable = False
    not_composable = ("its objective is the cross-entropy at the adversarial point x_adv, not the clean "
                      "cross-entropy plus a penalty")
    defaults = {"eps": 0.1, "steps": 10, "step_size": 0.0, "random_start": True, "clip_min": None,
                "clip_max": None, **RAMP_DEFAULTS}
    infinite = frozenset({"clip_min", "clip_max"})  # -inf / inf: no clamp
    bounds = {"eps": (0.0, None), "steps": (0, None), "step_size": (0.0, None), **RAMP_BOUNDS}

    def __init__(self, **params):
        super().__init__(**params)
        check_clip_order(self)
        self.init_ramp()

    def adversary(self, model, batch, ctx) -> torch.Tensor:
        """The PGD point x_adv (detached) for ``batch``; x itself when eps = 0."""
        x = batch.x.detach()
        eps = self.current_eps()
        if eps == 0:
            return x
        gen = require_generator(self.name, ctx) if self.random_start else None
        step = self.step_size or 2.5 * eps / max(self.steps, 1)
        return masked_pgd(model, x, batch.y, torch.ones_like(x), eps, self.steps, step_size=step,
                          bounds=clip_range(self, ctx), random_start=self.random_start, generator=gen)

    def loss(self, model, batch, ctx=None):
        ctx = context(ctx)
        logits = model(batch.x)
        ce = F.cross_entropy(logits, batch.y)
        if self.current_eps() == 0:  # the ball is the point x: the adversarial CE is the clean CE
            return LossOutput(ce, logits, {"ce": ce.detach(), "ce_adv": ce.detach()})
        ce_adv = F.cross_entropy(model(attached(batch.x, self.adversary(model, batch, ctx))), batch.y)
        return LossOutput(ce_adv, logits, {"ce": ce.detach(), "ce_adv": ce_adv.detach()})
