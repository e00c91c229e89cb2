"""How much of a model's explanation falls inside the mask (the region it should ignore).

mask_gradient_share = mean over annotated examples of  sum(|g| * m) / sum(|g|),
with g the input gradient of sum_k log softmax(f(x))_k (Ross et al.'s explanation). 0 means the
model's gradient ignores the masked region, 1 that it looks only there. Examples whose gradient is
exactly zero are left out. With no annotated example the share is NaN and a warning is issued.
Logits that are not finite raise a one-line ``UserError`` (their gradients would be left out silently).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch

from ..batch import Batch
from ..ops.input_gradients import input_gradients
from .logits import check_logits
from .wrong_reason import wrong_reason


def mask_share(attribution: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-example share of |attribution| mass inside ``mask``; NaN where the total is zero."""
    a = attribution.abs().flatten(1)
    total = a.sum(1)
    inside = (a * mask.flatten(1)).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(a.dtype).tiny), torch.nan)


class MaskShareAccumulator:
    """Accumulates the mask share of input gradients over batches (annotated examples only)."""

    def __init__(self, target: str = "log_prob_sum"):
        self.target = target
        self.total = 0.0
        self.count = 0
        self.wrong_total = 0.0  # wrong-reason score (metrics.wrong_reason), from the same gradients
        self.wrong_count = 0

    def update(self, model, batch: Batch, where: str = "a batch", num_classes: Optional[int] = None) -> torch.Tensor:
        """Add a batch; returns its logits (computed on the way, so callers need no second pass). Logits
        that are not finite (batch, ``num_classes``) raise a ``UserError`` naming ``where`` (e.g. the dataset)."""
        grad, logits = input_gradients(model, batch.x, self.target, batch.y)
        check_logits(logits, num_classes, where, len(batch))
        keep = batch.has_mask & batch.mask.flatten(1).any(1).bool()
        if keep.any():
            share = mask_share(grad[keep], batch.mask[keep])
            share = share[~share.isnan()]
            self.total += share.sum().item()
            self.count += share.numel()
            wrong = wrong_reason(grad[keep], batch.mask[keep])
            wrong = wrong[~wrong.isnan()]
            self.wrong_total += wrong.sum().item()
            self.wrong_count += wrong.numel()
        return logits.detach()

    def result(self, where: str = "") -> float:
        if self.count == 0:
            warnings.warn(f"mask_gradient_share{' on ' + where if where else ''}: no annotated example "
                          "with a non-empty mask; reporting NaN", RuntimeWarning, stacklevel=2)
            return math.nan
        return self.total / self.count

    def wrong_reason_result(self) -> float:
        """Mean wrong-reason score (threshold 0.67, precision) of the same examples; NaN when
        :meth:`result` is (it has already warned then)."""
        return self.wrong_total / self.wrong_count if self.wrong_count else math.nan
