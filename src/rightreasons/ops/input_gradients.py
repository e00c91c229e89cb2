"""Input gradients: the explanation that RRR (Ross et al., IJCAI 2017) constrains.

For a model f with logits z = f(x) the choices of what to differentiate are
  log_prob_sum:  s(x) = sum_k log softmax(z)_k          (Ross et al.; default)
  logit_sum:     s(x) = sum_k z_k                        (robust_mlx)
  loss:          s(x) = CE(z, y)                         (R4 / "loss gradient")
  target_logit:  s(x) = z_y                              (saliency of the labelled class)
and the gradient is taken per example: as long as examples do not interact (no train-mode batch norm),
d/dx sum_n s(x_n) gives every example's own gradient in one backward pass.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..precision import input_grad


def log_prob_sum(logits: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
    return F.log_softmax(logits, dim=1).sum()


def logit_sum(logits: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
    return logits.sum()


def _loss(logits: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
    if y is None:
        raise UserError("gradient target 'loss' needs labels y")
    return F.cross_entropy(logits, y, reduction="sum")


def _target_logit(logits: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
    if y is None:
        raise UserError("gradient target 'target_logit' needs labels y")
    return logits.gather(1, y.view(-1, 1)).sum()


GRADIENT_TARGETS: dict[str, Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]] = {
    "log_prob_sum": log_prob_sum,
    "logit_sum": logit_sum,
    "loss": _loss,
    "target_logit": _target_logit,
}


def gradient_target(name: str) -> Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]:
    try:
        return GRADIENT_TARGETS[name]
    except KeyError:
        raise UserError(f"unknown gradient target {name!r}; known: {', '.join(GRADIENT_TARGETS)}") from None


def input_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: str = "log_prob_sum",
    y: Optional[torch.Tensor] = None,
    create_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(grad, logits)``: d target(f(x)) / dx per example, and the logits f(x).

    With ``create_graph=True`` the gradient is itself differentiable (double backprop), which is what
    a penalty on it needs. ``x`` is not modified; the model's mode is left as it is.
    """
    score = gradient_target(target)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        (grad,) = input_grad(score(logits, y), x, create_graph=create_graph)
    return grad, logits
