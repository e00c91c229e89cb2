"""Proposals that several models agree on.

A shortcut is what every model trained without masks picks up; which part of the object one model happens
to lean on varies with its initialisation. So a proposal of one model is kept only where the proposals of
other models (trained on the same data with other seeds, proposing with the same settings) overlap it on
the same example:

    agreement_i = min_j IoU(P_i, P^j_i)   (0 where model j proposes nothing on example i),

kept when ``agreement_i >= min_iou``. Examples without a proposal have no agreement (NaN).
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from .agreement import mask_iou


def agreement(masks: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
    """(N,) float64: the smallest IoU of each example's proposal in ``masks`` with the same example's
    proposal in each of ``others`` (bool masks of one shape, (N, H, W) or (N, C, H, W)); NaN where ``masks``
    proposes nothing."""
    if not others:
        raise UserError("agreement: needs the proposals of at least one other model")
    masks = torch.as_tensor(masks).bool()
    worst = torch.full((len(masks),), math.inf, dtype=torch.float64)
    for k, other in enumerate(others):
        other = torch.as_tensor(other).bool()
        if other.shape != masks.shape:
            raise UserError(f"agreement: the proposals of other model {k + 1} have shape {tuple(other.shape)}, "
                            f"those compared with them {tuple(masks.shape)} (the same examples are needed)")
        worst = torch.minimum(worst, torch.nan_to_num(mask_iou(masks, other), nan=0.0))
    proposed = masks.flatten(1).any(1)
    return torch.where(proposed, worst, torch.full_like(worst, math.nan))


def keep_agreed(masks: torch.Tensor, others: list[torch.Tensor],
                min_iou: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(masks, selected, agreement)``: ``masks`` with the proposals whose :func:`agreement` is below
    ``min_iou`` emptied, which examples still have one, and the agreement of every example."""
    if isinstance(min_iou, bool) or not isinstance(min_iou, (int, float)) or not 0 < min_iou <= 1:
        raise UserError(f"min_iou must be a number in (0, 1], got {min_iou!r}")
    score = agreement(masks, others)
    selected = torch.nan_to_num(score, nan=-1.0) >= min_iou
    kept = torch.as_tensor(masks).bool() & selected.view(-1, *([1] * (masks.dim() - 1)))
    return kept, selected, score
