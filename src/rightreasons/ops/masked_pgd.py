"""Projected gradient ascent confined to the mask (PGD-Ex, Heo et al., NeurIPS 2023; PGD of Madry et al. 2018).

    x_adv = x + p,   p = argmax_{|p| <= eps * m} CE(f(x + p), y)   (approximately, by sign-gradient steps)

    x_adv <- clip_B( x_adv + step_size * sign(d CE / d x_adv) ),   B = mask_box(x, m, eps, bounds)

(the loop is ``ops.pgd.sign_pgd``).
B is the box x +- eps*m, clipped to the data range ``bounds = (lo, hi)`` where m != 0 (see
``interval_bounds.mask_box``): where m = 0 both ends of B are x, so ``x_adv`` equals ``x`` bit for
bit there and unmasked features never move, even outside the range; a masked feature already outside
the range can only move towards it.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import rand_like
from ..errors import UserError
from .interval_bounds import mask_box
from .modes import eval_mode
from .pgd import clip_, sign_pgd


def _check(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, eps: float, steps: int, step_size, bounds):
    if not x.is_floating_point():
        raise UserError(f"masked_pgd: x must be a float tensor, got {x.dtype}")
    if y.shape != x.shape[:1]:
        raise UserError(f"masked_pgd: y has shape {tuple(y.shape)}; expected ({x.shape[0]},) "
                        f"to match x {tuple(x.shape)}")
    try:
        torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError:
        raise UserError(f"masked_pgd: mask shape {tuple(mask.shape)} does not broadcast to "
                        f"x shape {tuple(x.shape)}") from None
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise UserError(f"masked_pgd: eps must be a finite number >= 0, got {eps!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise UserError(f"masked_pgd: steps must be an int >= 0, got {steps!r}")
    if step_size is not None and not (math.isfinite(step_size) and step_size >= 0):
        raise UserError(f"masked_pgd: step_size must be a finite number >= 0, got {step_size!r}")
    if bounds is not None and (len(bounds) != 2 or not bounds[0] <= bounds[1]):
        raise UserError(f"masked_pgd: bounds must be (lo, hi) with lo <= hi, got {bounds!r}")


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
    random_start: start uniformly in the box B, drawn from ``generator`` (required then; never the global RNG).

    Parameter ``.grad`` fields are not touched (gradients are taken with ``torch.autograd.grad``).
    """
    _check(x, y, mask, eps, steps, step_size, bounds)
    if random_start and generator is None:
        raise UserError("masked_pgd: random_start=True needs a torch.Generator (the global RNG is never used)")
    x = x.detach()
    # the feasible set is the (clipped) box itself; where m = 0 both ends are x exactly
    lower, upper = mask_box(x, mask.detach(), eps, bounds)
    if step_size is None:
        step_size = 2.5 * eps / steps if steps > 0 else 0.0
    if random_start:
        x_adv = rand_like(x, generator)
        x_adv = clip_(x_adv.mul_(upper - lower).add_(lower), lower, upper)
    else:
        x_adv = x.clone()
    if eps > 0 and steps > 0 and bool((upper != lower).any()):
        with eval_mode(model):
            x_adv = sign_pgd(lambda z: F.cross_entropy(model(z), y, reduction="sum"), x_adv, lower, upper, steps,
                             step_size)
    return x_adv
