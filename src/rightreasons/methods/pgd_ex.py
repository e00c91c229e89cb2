"""PGD-Ex (Heo, Piratla, Wicker & Weller, NeurIPS 2023): adversarial training inside the mask.

    loss = CE(f(x), y) + alpha * mean_n [ a_n * CE(f(x_adv_n), y_n) ],
    x_adv = argmax_{|p| <= eps * m, x + p in [clip_min, clip_max]} CE(f(x + p), y)   (sign-gradient PGD)

a_n = 1 if example n has a non-empty (annotated) mask, else 0 (no box, no robust term; with m = 0
everywhere the loss is ERM's exactly). The attack runs in eval mode (see ``ops.masked_pgd``); the
robust CE is then computed in the model's own mode. eps may ramp from 0 (``warmup_epochs``,
``ramp_epochs``; per epoch, saved by ``state_dict``).

Parameters: ``alpha`` (1.0), ``eps`` (1.0, in the data's units: 1 spans [0, 1]), ``steps`` (10),
``step_size`` (0 = step_factor * eps / steps, following the eps ramp), ``step_factor`` (2.5, Madry et
al.; Heo et al.'s code takes 1), ``random_start`` (False; draws from ``ctx.generator``),
``clip_min`` / ``clip_max`` (None: the training data's ``input_range``, [0, 1] for the built-in image
datasets; -inf / inf: no clamp), ``warmup_epochs`` / ``ramp_epochs`` (0, 0: constant eps).
"""

from __future__ import annotations

import torch.nn.functional as F

from ..ops.masked_pgd import masked_pgd
from .avg_ex import annotated, explanation_mask, require_generator
from .base import Method, check_clip_order, clip_range
from .eps_ramp import RAMP_BOUNDS, RAMP_DEFAULTS, RampedEps
from .registry import register_method


@register_method
class PgdEx(RampedEps, Method):
    """CE + alpha * CE at the masked PGD adversary (Heo et al. 2023)."""

    name = "pgd_ex"
    paper = "Heo, Piratla, Wicker & Weller, NeurIPS 2023"
    defaults = {"alpha": 1.0, "eps": 1.0, "steps": 10, "step_size": 0.0, "step_factor": 2.5,
                "random_start": False, "clip_min": None, "clip_max": None, **RAMP_DEFAULTS}
    infinite = frozenset({"clip_min", "clip_max"})  # -inf / inf: no clamp
    bounds = {"alpha": (0.0, None), "eps": (0.0, None), "steps": (0, None), "step_size": (0.0, None),
              "step_factor": (0.0, None), **RAMP_BOUNDS}

    def __init__(self, **params):
        super().__init__(**params)
        check_clip_order(self)
        self.init_ramp()

    def penalties(self, model, batch, x, logits, ctx):
        mask = explanation_mask(batch)
        weight = annotated(mask)
        eps = self.current_eps()
        if self.alpha == 0 or not bool(weight.any()):
            return {"pgd_ex": logits.new_zeros(())}
        if eps == 0:  # the box is the point x: the robust CE is the clean CE
            robust = F.cross_entropy(logits, batch.y, reduction="none")
            return {"pgd_ex": self.alpha * (weight * robust).mean()}
        idx = weight.nonzero().squeeze(1) if not bool(weight.all()) else None
        xs, ys, ms = (batch.x, batch.y, mask) if idx is None else (batch.x[idx], batch.y[idx], mask[idx])
        clip = clip_range(self, ctx)
        gen = require_generator(self.name, ctx) if self.random_start else None
        step = self.step_size or self.step_factor * eps / max(self.steps, 1)
        x_adv = masked_pgd(model, xs.detach(), ys, ms, eps, self.steps, step_size=step,
                           bounds=clip, random_start=self.random_start, generator=gen)
        robust = F.cross_entropy(model(x_adv), ys, reduction="sum") / len(batch)
        return {"pgd_ex": self.alpha * robust}
