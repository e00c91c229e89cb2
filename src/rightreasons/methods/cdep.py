"""CDEP, "Interpretations are useful: penalizing explanations to align neural networks with prior
knowledge" (Rieger, Singh, Murdoch & Yu, ICML 2020).

    loss = CE(f(x), y) + lam * mean_{n annotated} mean_k softmax([rel_nk, irrel_nk])_0
         = CE(f(x), y) + lam * mean_{n annotated} mean_k sigmoid(rel_nk - irrel_nk)

(rel, irrel) = contextual_decomposition(f, x, m): rel is the contribution of the masked (spurious)
region x * m to logit k, irrel that of the rest. This is the score of CDEP's code (``score_funcs.cdep``
and the Decoy-MNIST training script): the relevant and irrelevant logits are stacked per (example,
class), soft-maxed over that pair, and the masked region's share is averaged. The masked region is
the relevant part (robust_mlx passes 1 - mask, inverting it; we do not).

Examples without an annotation, or whose mask is empty, contribute nothing (a region with no pixels
has no share to penalise; CDEP's formula would give sigmoid(-logit) there), and the penalty is averaged
over the annotated examples only. CD is computed on the eval-mode function (dropout off, batch norm
on running statistics; see ``ops.contextual_decomposition``), the CE on the model in its own mode.

Parameters: ``lam`` (penalty weight; default chosen on Decoy-MNIST, see the project notes),
``bias_rule`` ("proportional" | "irrelevant") and ``activation_rule`` ("cd" | "shapley"), passed to
``contextual_decomposition``.
"""

from __future__ import annotations

import torch

from ..ops.contextual_decomposition import ACTIVATION_RULES, BIAS_RULES, contextual_decomposition
from .base import Method
from .registry import register_method


def masked_share(relevant: torch.Tensor, irrelevant: torch.Tensor) -> torch.Tensor:
    """Per-example mean over classes of softmax([relevant, irrelevant])[0], shape (B,)."""
    return torch.sigmoid(relevant - irrelevant).flatten(1).mean(1)


@register_method
class CDEP(Method):
    """CE + lam * the masked region's share of the logits under contextual decomposition (Rieger 2020)."""

    name = "cdep"
    defaults = {"lam": 1.0, "bias_rule": "proportional", "activation_rule": "cd"}
    choices = {"bias_rule": BIAS_RULES, "activation_rule": ACTIVATION_RULES}
    bounds = {"lam": (0.0, None)}

    def penalties(self, model, batch, x, logits, ctx):
        mask = batch.effective_mask
        keep = (mask.flatten(1) != 0).any(1)
        if self.lam == 0 or not bool(keep.any()):
            return {"cdep": logits.new_zeros(())}
        rel, irrel = contextual_decomposition(model, batch.x[keep], mask[keep], self.bias_rule, self.activation_rule)
        return {"cdep": self.lam * masked_share(rel, irrel).mean()}
