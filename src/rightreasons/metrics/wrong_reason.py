"""The "wrong reason" score: how much of a model's binarised saliency falls on the mask (the region it
must ignore). 0 = the explanation never points at the shortcut, 1 = it points only at the shortcut.

Per example, with g the input gradient of sum_k log softmax(f(x))_k (Ross et al. 2017's explanation),
the saliency is binarised to B = {i : |g_i| > threshold * max_j |g_j|} (the rule of Ross et al.'s
find-another-explanation, threshold 0.67), or to the ``top_fraction`` of features with the largest
|g|; with M = {i : m_i = 1}:

    overlap="precision" (default):  |B & M| / |B|          share of the salient features inside the mask
    overlap="iou":                  |B & M| / |B | M|      intersection over union

The dataset score is the mean over annotated examples (``has_mask`` and a non-empty mask); examples
whose gradient is exactly zero (B empty) are left out. With no such example the score is NaN and a
warning is issued, never a fake 0; logits that are not finite raise a ``UserError`` (metrics.logits).
(The soft version, the share of |g| mass inside the mask, is
``metrics.saliency.mask_share``.)
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import nn

from ..data.dataset import ExplanationDataset, capped_batch_size
from ..devices import model_device
from ..errors import UserError
from ..ops.input_gradients import input_gradients
from ..ops.modes import eval_mode
from .logits import check_logits, checked_outputs

OVERLAPS = ("precision", "iou")


def binarize(saliency: torch.Tensor, threshold: float = 0.67, top_fraction: Optional[float] = None) -> torch.Tensor:
    """Per example (dim 0), bool mask of the salient features: |s| > threshold * max |s|, or the
    ``top_fraction`` largest |s| (at least one feature) when given. All-zero saliency gives no feature."""
    if not 0.0 <= threshold < 1.0:
        raise UserError(f"binarize: threshold must be in [0, 1), got {threshold}")
    a = saliency.detach().abs().flatten(1)
    if top_fraction is None:
        out = a > threshold * a.amax(1, keepdim=True)
    else:
        if not 0.0 < top_fraction <= 1.0:
            raise UserError(f"binarize: top_fraction must be in (0, 1], got {top_fraction}")
        k = max(1, math.ceil(top_fraction * a.shape[1]))
        out = torch.zeros_like(a, dtype=torch.bool).scatter_(1, a.topk(k, dim=1).indices, True)
        out &= a > 0
    return out.view(saliency.shape)


def wrong_reason(
    saliency: torch.Tensor,
    mask: torch.Tensor,
    threshold: float = 0.67,
    top_fraction: Optional[float] = None,
    overlap: str = "precision",
) -> torch.Tensor:
    """Per-example overlap of the binarised ``saliency`` with ``mask`` (same shape), shape (B,);
    NaN where it is undefined (empty binarised saliency, or empty mask)."""
    if overlap not in OVERLAPS:
        raise UserError(f"wrong_reason: overlap={overlap!r} is not one of {', '.join(OVERLAPS)}")
    if saliency.shape != mask.shape:
        raise UserError(f"wrong_reason: saliency shape {tuple(saliency.shape)} does not match "
                        f"mask shape {tuple(mask.shape)}")
    b = binarize(saliency, threshold, top_fraction).flatten(1)
    m = mask.flatten(1) != 0
    inside = (b & m).sum(1).to(torch.float64)
    denom = (b.sum(1) if overlap == "precision" else (b | m).sum(1)).to(torch.float64)
    valid = (b.sum(1) > 0) & (m.sum(1) > 0)
    return torch.where(valid, inside / denom.clamp_min(1), torch.nan)


def wrong_reason_score(
    model: nn.Module,
    dataset: ExplanationDataset,
    threshold: float = 0.67,
    top_fraction: Optional[float] = None,
    overlap: str = "precision",
    target: str = "log_prob_sum",
    batch_size: int = 1000,
) -> float:
    """Mean :func:`wrong_reason` over the annotated examples of ``dataset`` (input gradients of
    ``target``, model in eval mode, restored afterwards); NaN with a warning when none is annotated."""
    total, count = 0.0, 0
    where = f"dataset {dataset.name!r}"
    device = model_device(model)
    with checked_outputs(model, dataset.num_classes, where), eval_mode(model):
        for batch in dataset.batches(capped_batch_size(dataset, batch_size)):
            batch = batch.to(device)
            keep = batch.has_mask & (batch.mask.flatten(1) != 0).any(1)
            if not bool(keep.any()):
                continue
            grad, logits = input_gradients(model, batch.x[keep], target, batch.y[keep])
            check_logits(logits, dataset.num_classes, where, int(keep.sum()))
            score = wrong_reason(grad, batch.mask[keep], threshold, top_fraction, overlap)
            score = score[~score.isnan()]
            total += score.sum().item()
            count += score.numel()
    if count == 0:
        warnings.warn(f"wrong_reason_score on {dataset.name}: no annotated example with a non-empty mask and a "
                      "non-zero gradient; reporting NaN", RuntimeWarning, stacklevel=2)
        return math.nan
    return total / count
