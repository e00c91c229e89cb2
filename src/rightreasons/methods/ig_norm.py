"""IG-NORM, robust attribution regularisation (Chen, Wu, Rastogi, Liang & Jha, NeurIPS 2019).

    loss = CE(f(x), y) + lam * mean_n || IG^{l_y}(x_n -> x'_n) ||_1,
    x'   = argmax_{x' in B(x)} sum_n || IG~^{l_y}(x_n -> x'_n) ||_1                 (sign-gradient PGD)

IG^{l_y}(x -> x') attributes the change of the per-example loss l_y = CE(f(.), y) along the straight
path from x (the baseline) to x' (``ops.integrated_gradients``, right Riemann sum, as Chen et al.'s code);
by completeness its entries sum to l_y(x') - l_y(x). As in their code the inner maximisation uses a
cheaper IG~ with ``pgd_ig_steps`` path points (theirs: 10 of the 50), starts at a uniform random point
of the ball (``ctx.generator``), and takes signed steps; the attack runs in eval mode, the final loss in
the model's own mode.

The ball B(x) is {x' : |x' - x| <= eps * r, clip_min <= x' <= clip_max}, with r = 1 everywhere for
``region="all"`` (Chen et al.) and r = the example's effective mask for ``region="mask"``: the
perturbation is then confined to the annotated shortcut region, and since IG vanishes where x' = x the
attribution norm is restricted to the mask too (un-annotated examples get x' = x, IG = 0).

Options: ``eps`` (0.1), ``pgd_steps`` (2), ``step_size`` (0 = 2.5 * eps / pgd_steps), ``random_start``
(True; required by IG-NORM: its objective has zero gradient at x' = x), ``ig_steps`` (4) and
``pgd_ig_steps`` (2) path points, ``chunk_size`` (0 = all path points in one pass), ``region``,
``clip_min`` / ``clip_max`` (None: the training data's ``input_range``; -inf / inf: no clamp),
``warmup_epochs`` / ``ramp_epochs`` (0, 0: constant eps; otherwise an eps ramp, ``methods/eps_ramp.py``).
Chen et al.'s MNIST settings (a 2-conv CNN) are eps 0.3, 40 PGD steps of 0.01, 50 IG points (10 in
the attack), lam 1 / beta 0.1; ours are smaller, what an MLP can afford on a CPU. Why these defaults:
docs/results/method-tuning.md#ig_norm.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..batch import Batch
from ..devices import rand_like
from ..errors import UserError
from ..ops.integrated_gradients import integrated_gradients
from ..ops.interval_bounds import mask_box
from ..ops.modes import eval_mode
from ..ops.pgd import clip_, sign_pgd
from .base import Method, StepContext, check_clip_order, clip_range
from .eps_ramp import RAMP_BOUNDS, RAMP_DEFAULTS, RampedEps
from .registry import register_method

REGIONS = ("all", "mask")
RAR_DEFAULTS = {"eps": 0.1, "pgd_steps": 2, "step_size": 0.0, "random_start": True, "ig_steps": 4,
                "pgd_ig_steps": 2, "chunk_size": 0, "region": "all", "clip_min": None, "clip_max": None,
                **RAMP_DEFAULTS}
RAR_BOUNDS = {"eps": (0.0, None), "pgd_steps": (0, None), "step_size": (0.0, None), "ig_steps": (1, None),
              "pgd_ig_steps": (1, None), "chunk_size": (0, None), **RAMP_BOUNDS}


def loss_attribution(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, steps: int,
                     chunk_size: int | None, create_graph: bool) -> torch.Tensor:
    """IG of the per-example cross-entropy from ``x`` to ``x_adv``, shape of x."""
    return integrated_gradients(model, x_adv, x, lambda z: F.cross_entropy(z, y, reduction="none"), steps,
                                chunk_size=chunk_size, create_graph=create_graph)


def l1_per_example(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).abs().sum(1)


class RobustAttribution(RampedEps, Method):
    """Shared machinery of IG-NORM and IG-SUM-NORM: the ball, the PGD inner maximisation, the IG term."""

    double_backward = True  # the attribution penalty is differentiated through integrated gradients
    uses_mask = False  # with the default region="all"; region="mask" reads masks (and reduces to ERM on m = 0)
    paper = "Chen, Wu, Rastogi, Liang & Jha, NeurIPS 2019"
    infinite = frozenset({"clip_min", "clip_max"})  # -inf / inf: no clamp
    choices = {"region": REGIONS}

    def radius(self, batch: Batch) -> torch.Tensor:
        """Per-feature l_inf radius: the current eps everywhere, or inside the effective mask."""
        if self.region == "mask":
            return self.current_eps() * batch.effective_mask
        return torch.full_like(batch.x, self.current_eps())

    def __init__(self, **params):
        super().__init__(**params)
        check_clip_order(self)
        self.init_ramp()

    def attack(self, model: nn.Module, batch: Batch, objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               ctx: StepContext) -> torch.Tensor:
        """Sign-gradient PGD maximising ``objective(x, x_adv)`` (summed over the batch) in the ball."""
        x = batch.x.detach()
        radius = self.radius(batch)
        if self.current_eps() == 0 or not bool((radius != 0).any()):
            return x
        lower, upper = mask_box(x, radius, 1.0, clip_range(self, ctx))
        start = x
        if self.random_start:
            if ctx.generator is None:
                raise UserError(f"method {self.name!r} draws random numbers: pass a torch.Generator as "
                                "StepContext.generator")
            noise = rand_like(x, ctx.generator)
            start = clip_(x + (2 * noise - 1) * radius, lower, upper)
        step = self.step_size or 2.5 * self.current_eps() / max(self.pgd_steps, 1)
        with eval_mode(model):
            return sign_pgd(lambda x_adv: objective(x, x_adv), start, lower, upper, self.pgd_steps, step)

    def ig_term(self, model, batch, x_adv, steps, create_graph):
        chunk = self.chunk_size or None
        return l1_per_example(loss_attribution(model, batch.x.detach(), x_adv, batch.y, steps, chunk, create_graph))


@register_method
class IGNorm(RobustAttribution):
    """CE(x) + lam * ||IG(x -> x')||_1 at the x' that maximises the IG norm (Chen et al. 2019)."""

    name = "ig_norm"
    defaults = {"lam": 1.0, **RAR_DEFAULTS}
    bounds = {"lam": (0.0, None), **RAR_BOUNDS}

    def __init__(self, **params):
        super().__init__(**params)
        if not self.random_start and self.pgd_steps > 0 and self.eps > 0:
            # d||(x' - x) * g||_1 / dx' vanishes at x' = x: a deterministic start never moves
            raise UserError("method 'ig_norm' needs random_start=True (the IG norm has zero gradient at x' = x)")

    def penalties(self, model, batch, x, logits, ctx):
        if self.lam == 0:
            return {"ig_l1": logits.new_zeros(())}

        def objective(x, x_adv):
            return self.ig_term(model, batch, x_adv, self.pgd_ig_steps, True).sum()

        x_adv = self.attack(model, batch, objective, ctx)
        return {"ig_l1": self.lam * self.ig_term(model, batch, x_adv, self.ig_steps, True).mean()}
