"""RRR, "Right for the Right Reasons" (Ross, Hughes & Doshi-Velez, IJCAI 2017), and certainty
regularisation (the same penalty with the mask set to ones everywhere).

    loss = CE(f(x), y) + lam * mean_n || m_n * d s(f(x_n)) / d x_n ||

s is the gradient target (default: sum_k log softmax(f(x))_k, as Ross et al.) and ||.|| the norm
(default: squared L2). Inputs are in [0, 1] and the penalty is averaged over the batch like the CE,
so lam = 10 here corresponds to Ross et al.'s lam = 1000 on a summed loss with their scaling only
roughly; lam does not transfer between implementations. Examples without an
annotation (``has_mask`` False) contribute nothing to the penalty.
"""

import torch

from ..ops.input_gradients import GRADIENT_TARGETS, gradient_target
from ..precision import input_grad
from .base import Method
from .registry import register_method

NORMS = ("squared_l2", "l2", "l1")


def masked_gradient_norm(grad: torch.Tensor, mask: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of ``grad * mask``, shape (B,)."""
    flat = (grad * mask).flatten(1)
    if norm == "squared_l2":
        return flat.pow(2).sum(1)
    if norm == "l2":
        return torch.linalg.vector_norm(flat, dim=1)
    if norm == "l1":
        return flat.abs().sum(1)
    raise ValueError(f"unknown norm {norm!r}; known: {', '.join(NORMS)}")


@register_method
class RRR(Method):
    """Penalise input gradients inside the mask (Ross et al. 2017).

    Parameters: ``lam`` (10.0) penalty weight; ``target`` ("log_prob_sum" | "logit_sum" | "loss" |
    "target_logit") what is differentiated; ``norm`` ("squared_l2" | "l2" | "l1");
    ``everywhere`` (False) ignore the mask and penalise every input feature (certainty regularisation).
    """

    name = "rrr"
    paper = "Ross, Hughes & Doshi-Velez, IJCAI 2017"
    defaults = {"lam": 10.0, "target": "log_prob_sum", "norm": "squared_l2", "everywhere": False}
    choices = {"target": tuple(GRADIENT_TARGETS), "norm": NORMS}
    bounds = {"lam": (0.0, None)}
    needs_input_grad = True

    def penalties(self, model, batch, x, logits, ctx):
        mask = torch.ones_like(batch.x) if self.everywhere else batch.effective_mask
        if self.lam == 0 or not bool(mask.any()):  # nothing to penalise: skip the double backward
            return {"rrr": logits.new_zeros(())}
        score = gradient_target(self.target)(logits, batch.y)
        (grad,) = input_grad(score, x, create_graph=True)
        return {"rrr": self.lam * masked_gradient_norm(grad, mask, self.norm).mean()}


@register_method
class Certainty(RRR):
    """Certainty regularisation (Ross et al. 2017, §5): RRR with the mask set to ones everywhere."""

    name = "certainty"
    paper = "Ross, Hughes & Doshi-Velez, IJCAI 2017"
    uses_mask = False
    defaults = {**RRR.defaults, "lam": 0.1, "everywhere": True}
