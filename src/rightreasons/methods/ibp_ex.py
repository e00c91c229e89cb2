"""IBP-Ex (Heo, Piratla, Wicker & Weller, NeurIPS 2023): certified robustness inside the mask, trained
with interval bound propagation as in Gowal et al. (ICCV 2019).

    loss = kappa * CE(f(x), y) + (1 - kappa) * mean_n CE(z_worst_n, y_n),
    z_worst_n,k = -(lower bound of z_y - z_k over the box x_n +- eps * m_n)      (``bound="margin"``)
    z_worst_n,k = upper(z_k) for k != y, lower(z_y) for k = y                     (``bound="naive"``)

Examples with an empty mask (un-annotated) use their clean CE as the worst case (their box is the
point x), so with m = 0 everywhere the loss equals ERM's (exactly while kappa = 1). Gowal-style
schedules, advanced per epoch and saved by ``state_dict``: eps is 0 for ``warmup_epochs``, then ramps
linearly to ``eps`` over ``ramp_epochs`` while kappa goes 1 -> ``kappa_end``. Without clipping the box
is centred at x and the clean forward pass is shared with the bound computation.

Parameters (inputs in [0, 1]): ``eps`` (1.0), ``kappa_end`` (0.5), ``warmup_epochs`` (1),
``ramp_epochs`` (3), ``bound`` ("margin"), ``clip_min`` / ``clip_max`` (-inf / inf: no clipping; None:
the training data's ``input_range``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..ops.interval_bounds import check_bounded, interval_bounds, mask_box, masked_ibp
from ..ops.schedules import ce_weight_schedule, eps_ramp
from .avg_ex import annotated, explanation_mask
from .base import LossOutput, Method, check_clip_order, clip_range, context
from .registry import register_method


@register_method
class IbpEx(Method):
    """kappa * CE + (1 - kappa) * CE of the IBP worst-case logits over the mask box (Heo et al. 2023)."""

    name = "ibp_ex"
    paper = "Heo, Piratla, Wicker & Weller, NeurIPS 2023"
    defaults = {"eps": 1.0, "kappa_end": 0.5, "warmup_epochs": 1.0, "ramp_epochs": 3.0, "bound": "margin",
                "clip_min": -math.inf, "clip_max": math.inf}
    choices = {"bound": ("margin", "naive")}
    infinite = frozenset({"clip_min", "clip_max"})  # -inf / inf: no clamp
    optional = frozenset({"clip_min", "clip_max"})
    bounds = {"eps": (0.0, None), "kappa_end": (0.0, 1.0), "warmup_epochs": (0.0, None), "ramp_epochs": (0.0, None)}

    def __init__(self, **params):
        super().__init__(**params)
        check_clip_order(self)
        self.eps_schedule = eps_ramp(self.eps, self.warmup_epochs, self.ramp_epochs)
        self.kappa_schedule = ce_weight_schedule(self.kappa_end, self.warmup_epochs, self.ramp_epochs)

    def check_model(self, model):
        """Any model interval bounds support (nn.Sequential chains, torch.fx-traceable graphs such as ResNets),
        batch norm in train mode included: the box is normalised with the clean batch's statistics and the
        running statistics move once per step, from the clean forward pass."""
        check_bounded(model, margin=self.bound == "margin")

    def ce_weight(self, ctx):
        return self.kappa_schedule.current()

    def _worst_logits(self, model, batch, mask, eps, clip):
        if self.bound == "margin":
            return -masked_ibp(model, batch.x, batch.y, mask, eps, bounds=clip)
        lower, upper = interval_bounds(model, *mask_box(batch.x, mask, eps, clip), clean_batch=batch.x)
        is_y = F.one_hot(batch.y, upper.shape[1]).bool()
        return torch.where(is_y, lower, upper)

    def _term(self, clean_logits, worst_logits, batch, weight):
        if worst_logits is None:
            robust = F.cross_entropy(clean_logits, batch.y)
        elif bool(weight.all()):
            robust = F.cross_entropy(worst_logits, batch.y)
        else:  # un-annotated examples: the box is the point x, so the worst case is the clean case
            clean = F.cross_entropy(clean_logits, batch.y, reduction="none")
            worst = F.cross_entropy(worst_logits, batch.y, reduction="none")
            robust = torch.where(weight > 0, worst, clean).mean()
        return (1.0 - self.kappa_schedule.current()) * robust

    def penalties(self, model, batch, x, logits, ctx):
        if self.kappa_schedule.current() == 1.0:
            return {"ibp_ex": logits.new_zeros(())}
        mask = explanation_mask(batch)
        weight = annotated(mask)
        eps = self.eps_schedule.current()
        worst = (self._worst_logits(model, batch, mask, eps, clip_range(self, ctx))
                 if eps > 0 and bool(weight.any()) else None)
        return {"ibp_ex": self._term(logits, worst, batch, weight)}

    def loss(self, model, batch, ctx=None):
        """One pass for the clean logits and the bounds when the box is centred at x (margin form)."""
        ctx = context(ctx)
        mask = explanation_mask(batch)
        weight = annotated(mask)
        eps = self.eps_schedule.current()
        if (self.kappa_schedule.current() == 1.0 or eps == 0 or not bool(weight.any())
                or self.bound != "margin" or clip_range(self, ctx) is not None):
            return super().loss(model, batch, ctx)
        logits, margins = masked_ibp(model, batch.x, batch.y, mask, eps, clean=True, check_mask=False)
        ce = F.cross_entropy(logits, batch.y)
        penalty = self._term(logits, -margins, batch, weight)
        return LossOutput(self.ce_weight(ctx) * ce + penalty, logits, {"ce": ce.detach(), "ibp_ex": penalty.detach()})

    def start_epoch(self, epoch, num_epochs):
        self.eps_schedule.set_epoch(epoch)
        self.kappa_schedule.set_epoch(epoch)

    def state_dict(self):
        return {"eps": self.eps_schedule.state_dict(), "kappa": self.kappa_schedule.state_dict()}

    def load_state_dict(self, state):
        unknown = sorted(set(state) - {"eps", "kappa"})
        if unknown:
            raise UserError(f"method {self.name!r}: unknown state keys {unknown}")
        self.eps_schedule.load_state_dict(state.get("eps", {"epoch": 0}))
        self.kappa_schedule.load_state_dict(state.get("kappa", {"epoch": 0}))
