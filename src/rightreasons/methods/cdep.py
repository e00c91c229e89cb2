"""CDEP, "Interpretations are useful: penalizing explanations to align neural networks with prior
knowledge" (Rieger, Singh, Murdoch & Yu, ICML 2020): penalise the masked region's contribution to the
logits under contextual decomposition, (rel, irrel) = contextual_decomposition(f, x, m), where rel is
the part due to the masked (spurious) region x * m. robust_mlx passes 1 - mask (inverted); we do not.

Two scores (``score``):

* ``"softmax"``: Rieger et al.'s code (``score_funcs.cdep`` and the Decoy-MNIST script): the masked
  region's softmax share of every (example, class) pair of parts, averaged,
      penalty = mean_{n annotated} mean_k softmax([rel_nk, irrel_nk])_0 = mean sigmoid(rel_nk - irrel_nk).
* ``"abs"`` (default): the masked region's effect on the logit differences,
      penalty = mean_{n annotated} mean_k | rel_nk - mean_j rel_nj |.

The softmax share can be lowered by shifting the two parts against each other (rel_k - c, irrel_k + c
leaves the logits unchanged); centring and taking magnitudes (``"abs"``) closes that loophole.

Activation and bias rules (see ``ops.contextual_decomposition``): with the standard CD ReLU rule
(``activation_rule="cd"``) interactions go to the irrelevant part; ``"marginal"`` (default) charges them
to the masked region, and with ``bias_rule="irrelevant"`` (default) the irrelevant part is the network
applied to x * (1 - m) (for networks without max pooling), so rel is the effect of removing the masked
region. Rieger et al.'s exact configuration is ``score=softmax activation_rule=cd bias_rule=proportional``.

Examples without an annotation, or whose mask is empty, contribute nothing and the penalty is averaged
over the annotated examples only. CD is computed on the eval-mode function (dropout off, batch norm on
running statistics), the CE on the model in its own mode.

Parameters: ``lam`` (3.0) weight of the penalty; ``score`` ("abs" | "softmax"); ``activation_rule``
("marginal" | "cd" | "shapley"); ``bias_rule`` ("irrelevant" | "proportional").

Why these defaults: docs/results/method-tuning.md#cdep
"""

from __future__ import annotations

import torch

from ..ops.contextual_decomposition import ACTIVATION_RULES, BIAS_RULES, check_decomposable, contextual_decomposition
from .base import Method
from .registry import register_method

SCORES = ("abs", "softmax")


def masked_share(relevant: torch.Tensor, irrelevant: torch.Tensor) -> torch.Tensor:
    """Per-example mean over classes of softmax([relevant, irrelevant])[0], shape (B,)."""
    return torch.sigmoid(relevant - irrelevant).flatten(1).mean(1)


def centred_relevance(relevant: torch.Tensor) -> torch.Tensor:
    """Per-example mean over classes of |rel_k - mean_j rel_j|, shape (B,)."""
    return (relevant - relevant.mean(1, keepdim=True)).abs().flatten(1).mean(1)


@register_method
class CDEP(Method):
    """CE + lam * the masked region's contribution to the logits under contextual decomposition."""

    name = "cdep"
    paper = "Rieger, Singh, Murdoch & Yu, ICML 2020"
    defaults = {"lam": 3.0, "score": "abs", "activation_rule": "marginal", "bias_rule": "irrelevant"}
    choices = {"score": SCORES, "bias_rule": BIAS_RULES, "activation_rule": ACTIVATION_RULES}
    bounds = {"lam": (0.0, None)}

    def check_model(self, model):
        check_decomposable(model)

    def penalties(self, model, batch, x, logits, ctx):
        mask = batch.effective_mask
        keep = (mask.flatten(1) != 0).any(1)
        if self.lam == 0 or not bool(keep.any()):
            return {"cdep": logits.new_zeros(())}
        x = batch.x
        if not bool(keep.all()):
            x, mask = x[keep], mask[keep]
        rel, irrel = contextual_decomposition(model, x, mask, self.bias_rule, self.activation_rule)
        score = centred_relevance(rel) if self.score == "abs" else masked_share(rel, irrel)
        return {"cdep": self.lam * score.mean()}
