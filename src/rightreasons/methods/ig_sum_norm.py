"""IG-SUM-NORM, robust attribution regularisation (Chen, Wu, Rastogi, Liang & Jha, NeurIPS 2019).

    loss = CE(f(x'), y) + beta * mean_n || IG^{l_y}(x_n -> x'_n) ||_1,
    x'   = argmax_{x' in B(x)} sum_n [ CE(f(x'_n), y_n) + beta * || IG~^{l_y}(x_n -> x'_n) ||_1 ]

By completeness sum(IG) = l_y(x') - l_y(x), so the objective is l_y(x) + sum(IG) + beta * ||IG||_1:
the "sum + beta * L1-norm" size function of the paper (Madry et al.'s adversarial training when
beta = 0). Ball, attack and options as for ``ig_norm`` (see ``methods/ig_norm.py``); Chen et al. use
beta = 0.1 on MNIST. The returned logits are the clean ones (f(x)); the terms log the clean CE, the CE
at x' and the IG norm.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import LossOutput, attached, context
from .ig_norm import RAR_BOUNDS, RAR_DEFAULTS, RobustAttribution
from .registry import register_method


@register_method
class IGSumNorm(RobustAttribution):
    """CE(x') + beta * ||IG(x -> x')||_1 at the x' that maximises that sum (Chen et al. 2019)."""

    name = "ig_sum_norm"
    composable = False
    not_composable = ("its objective is the cross-entropy at the adversarial point x', not the clean cross-entropy "
                      "plus a penalty")
    defaults = {"beta": 0.1, **RAR_DEFAULTS}
    bounds = {"beta": (0.0, None), **RAR_BOUNDS}

    def loss(self, model, batch, ctx=None):
        ctx = context(ctx)
        logits = model(batch.x)
        ce = F.cross_entropy(logits, batch.y)

        def objective(x, x_adv):
            total = F.cross_entropy(model(x_adv), batch.y, reduction="sum")
            if self.beta:
                total = total + self.beta * self.ig_term(model, batch, x_adv, self.pgd_ig_steps, True).sum()
            return total

        x_adv = attached(batch.x, self.attack(model, batch, objective, ctx))
        ce_adv = F.cross_entropy(model(x_adv), batch.y)
        ig = self.ig_term(model, batch, x_adv, self.ig_steps, True).mean() if self.beta else ce.new_zeros(())
        total = ce_adv + self.beta * ig
        return LossOutput(total, logits, {"ce": ce.detach(), "ce_adv": ce_adv.detach(), "ig_l1": ig.detach()})
