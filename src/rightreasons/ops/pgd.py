"""Projected sign-gradient descent or ascent in a box: the one PGD loop that masked PGD, IG-NORM's inner
maximisation and the top-k attribution attack are built on (Madry et al., ICLR 2018).

    x <- clip_[lower, upper]( x + step_size * sign(d objective(x) / dx) )     ``steps`` times

(``-`` instead of ``+`` with ``maximize=False``). The box is given by its end points, so the caller
decides where the input may move (where lower == upper == x, it never does, bit for bit).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..precision import input_grad


def clip_(t: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """In place: t <- min(max(t, lower), upper)."""
    return torch.minimum(torch.maximum(t, lower, out=t), upper, out=t)


def sign_pgd(objective: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, lower: torch.Tensor,
             upper: torch.Tensor, steps: int, step_size: float, maximize: bool = True,
             on_step: Optional[Callable[[torch.Tensor], None]] = None) -> torch.Tensor:
    """Run ``steps`` signed gradient steps of ``step_size`` on the scalar ``objective(x)`` from ``start``,
    projecting onto [lower, upper] after each; ``on_step(x)`` sees every iterate (detached). Returns the
    last iterate, detached. Gradients are taken with ``torch.autograd.grad`` (parameter ``.grad`` untouched);
    the caller chooses the model's mode."""
    x = start.detach().clone()
    sign = 1.0 if maximize else -1.0
    with torch.enable_grad():
        for _ in range(steps):
            x.requires_grad_(True)
            (grad,) = input_grad(objective(x), x)
            x.requires_grad_(False)  # the graph is gone: update in place
            clip_(x.add_(grad.sign_(), alpha=sign * step_size), lower, upper)
            if on_step is not None:
                on_step(x)
    return x
