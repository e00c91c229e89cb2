"""Projected gradient ascent confined to the mask (PGD-Ex, Heo et al., NeurIPS 2023; PGD of Madry et al. 2018).

    x_adv = x + p,   p = argmax_{|p| <= eps * m} CE(f(x + p), y)   (approximately, by sign-gradient steps)

    p <- clip_{[-eps*m, eps*m]}( p + step_size * sign(d CE / d p) ),   then x + p clamped to ``bounds``

The perturbation is zero, and ``x_adv`` equals ``x`` bit for bit, wherever m = 0. The clamp to the data
range ``bounds = (lo, hi)`` acts only where m != 0 (unmasked features never move) and never pushes a
value further from x than it was (a masked feature already outside the range can only move towards it).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .modes import eval_mode


def _check(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, eps: float, steps: int, step_size, bounds):
    if not x.is_floating_point():
        raise UserError(f"masked_pgd: x must be a float tensor, got {x.dtype}")
    if y.shape != x.shape[:1]:
        raise UserError(f"masked_pgd: y has shape {tuple(y.shape)}; expected ({x.shape[0]},) to match x {tuple(x.shape)}")
    try:
        torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError:
        raise UserError(f"masked_pgd: mask shape {tuple(mask.shape)} does not broadcast to x shape {tuple(x.shape)}") from None
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise UserError(f"masked_pgd: eps must be a finite number >= 0, got {eps!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise UserError(f"masked_pgd: steps must be an int >= 0, got {steps!r}")
    if step_size is not None and not (math.isfinite(step_size) and step_size >= 0):
        raise UserError(f"masked_pgd: step_size must be a finite number >= 0, got {step_size!r}")
    if bounds is not None and (len(bounds) != 2 or not bounds[0] <= bounds[1]):
        raise UserError(f"masked_pgd: bounds must be (lo, hi) with lo <= hi, got {bounds!r}")


def _project(x: torch.Tensor, p: torch.Tensor, radius: torch.Tensor, moving: torch.Tensor, bounds) -> torch.Tensor:
    """Project the perturbation onto {|p| <= radius, x + p in bounds (where moving)}; p = 0 where not moving."""
    p = torch.maximum(torch.minimum(p, radius), -radius)
    if bounds is not None:
        p = _clamp(x, x + p, bounds) - x
    return torch.where(moving, p, torch.zeros_like(p))


def _clamp(x: torch.Tensor, x_adv: torch.Tensor, bounds) -> torch.Tensor:
    """Clamp x_adv to [min(lo, x), max(hi, x)]: into the range, never further from x than it was."""
    lo, hi = bounds
    return torch.maximum(torch.minimum(x_adv, x.clamp(min=hi)), x.clamp(max=lo))


def masked_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    eps: float,
    steps: int,
    step_size: Optional[float] = None,
    bounds: Optional[tuple[float, float]] = None,
    random_start: bool = False,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Return a detached ``x_adv`` maximising CE(f(x_adv), y) over the box x +- eps * mask.

    model:        any ``nn.Module`` giving logits; run in eval mode during the attack, mode restored after.
    mask:         broadcastable to x; 1 (or any m > 0) where the input may move, with radius eps * m.
    eps, steps:   box radius and number of sign-gradient steps (steps = 0 returns x, or the random start).
    step_size:    default 2.5 * eps / steps (Madry et al.).
    bounds:       optional data range (lo, hi), enforced only on masked features.
    random_start: start uniformly in the box, drawn from ``generator`` (required then; never the global RNG).

    Parameter ``.grad`` fields are not touched (gradients are taken with ``torch.autograd.grad``).
    """
    _check(x, y, mask, eps, steps, step_size, bounds)
    if random_start and generator is None:
        raise UserError("masked_pgd: random_start=True needs a torch.Generator (the global RNG is never used)")
    x = x.detach()
    mask = mask.detach().to(x.dtype).expand_as(x)
    moving = mask != 0
    radius = eps * mask.abs()
    if step_size is None:
        step_size = 2.5 * eps / steps if steps > 0 else 0.0
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        p = _project(x, (2 * noise - 1) * radius, radius, moving, bounds)
    else:
        p = torch.zeros_like(x)
    if eps > 0 and bool(moving.any()):
        with eval_mode(model), torch.enable_grad():
            for _ in range(steps):
                p.requires_grad_(True)
                loss = F.cross_entropy(model(x + p), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, p)
                p = _project(x, p.detach() + step_size * grad.sign(), radius, moving, bounds)
    x_adv = x + p if bounds is None else _clamp(x, x + p, bounds)  # re-clamp: x + (x_adv - x) may round out
    return torch.where(moving, x_adv, x).detach()
