"""Agreement of proposed masks with true masks: per-example IoU and a summary over a split."""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import UserError


def _flat(masks: torch.Tensor) -> torch.Tensor:
    """(N, H*W) bool: a pixel is on when any channel is (masks (N, H, W) or (N, C, H, W))."""
    m = torch.as_tensor(masks).bool()
    if m.dim() == 4:
        m = m.any(1)
    if m.dim() != 3:
        raise UserError(f"masks must have shape (N, H, W) or (N, C, H, W), got {tuple(m.shape)}")
    return m.flatten(1)


def mask_iou(proposed: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """(N,) float64: ``|P & T| / |P | T|`` per example (channels merged by OR), NaN where both are empty."""
    p, t = _flat(proposed), _flat(true)
    if p.shape != t.shape:
        raise UserError(f"mask_iou: proposed masks {tuple(proposed.shape)} and true masks {tuple(true.shape)} differ")
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))


def iou_summary(proposed: torch.Tensor, true: torch.Tensor, has_mask: Optional[torch.Tensor] = None) -> dict:
    """Agreement with the true masks over the annotated examples (``has_mask``, default all):
    ``mean_iou`` over those whose true mask is non-empty, ``recall`` = the share of their true-mask pixels
    inside the proposals, ``precision`` = the share of their proposed pixels inside the true masks,
    ``proposed_on_empty`` = proposals on annotated examples whose true mask is empty, and the counts."""
    p, t = _flat(proposed), _flat(true)
    iou = mask_iou(proposed, true)
    annotated = torch.ones(len(p), dtype=torch.bool) if has_mask is None else torch.as_tensor(has_mask).bool().cpu()
    nonempty = annotated & t.any(1)
    empty = annotated & ~t.any(1)
    covered = (p & t)[nonempty].sum().item()
    true_px = t[nonempty].sum().item()
    proposed_px = p[nonempty].sum().item()
    return {
        "mean_iou": float(iou[nonempty].mean()) if nonempty.any() else float("nan"),
        "recall": covered / true_px if true_px else float("nan"),
        "precision": covered / proposed_px if proposed_px else float("nan"),
        "examples": len(p), "with_true_mask": int(nonempty.sum()), "proposals": int(p.any(1).sum()),
        "proposed_on_empty": int((p.any(1) & empty).sum()), "empty_true_masks": int(empty.sum()),
    }
