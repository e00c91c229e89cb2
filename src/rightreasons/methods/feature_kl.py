"""Feature KL, the two-stage method of Tao & Shokri ("Machine Learning from Explanations", poster,
Algorithm 1): a model h = c o g o f (feature extractor f, square mapping layer g, classifier c; see
``rightreasons.models.split``) learns from labels and from explanations at once.

    CE step:  CE(c(g(f(x))), y)                                   updates f, g and c
    KL step:  KL( softmax(f(x')) || softmax(g(f(x))) ),  x' = x * (1 - m) + baseline * m
                                                                  updates g (by default also f)

x' is the input with the masked (shortcut) region blanked out (the poster keeps x * e(x), e marking
the relevant region; our masks mark what to ignore, so e = 1 - m): g learns to map the features of
the full input onto those of the input without the shortcut, and c learns on mapped features.

With ``schedule="joint"`` (default) both terms are summed at every step,

    loss = CE(c(g(f(x))), y) + lam * mean_n a_n * KL_n        (a_n = 1 if example n is annotated)

with f(x') computed without a graph, so one optimiser step takes both of the poster's steps at once
(lam playing the learning-rate ratio eta_2 / eta_1) and every parameter gets a gradient every step (as
DistributedDataParallel needs). ``schedule="alternate"`` follows the poster by step parity: even steps
CE only, odd steps lam * KL only (then only the KL's parameters have a gradient; not for DDP).

What the KL moves (``update``): "mapping" is the poster's rule, the input f(x) of g is detached so the
KL reaches g only. The default, "mapping_and_features", deviates from the poster: it lets the KL reach f
as well (never c), so f is pulled to features that g can map onto the shortcut-free ones. Where f ends
and g begins is set by the model (``split-mlp``: after its first hidden layer by default; see
``rightreasons.models.split``).

Examples without an annotation (``has_mask`` False) contribute no KL term; an annotated example with
an empty mask has x' = x (target: its own unmasked features). So with no annotated example the loss
is ERM's, but an all-zero mask on annotated examples is not: it pulls g towards the identity (in the
softmax sense). The method therefore declares ``standalone`` (the shared contract test assumes a
plain model and mask = 0 -> ERM); tests/test_feature_kl.py checks it on split models instead.

Parameters: ``lam`` (10000.0) weight of the KL term; ``update`` ("mapping_and_features" | "mapping");
``schedule`` ("joint" | "alternate"); ``baseline`` (0.0) value written into the masked region of x'.

Why these defaults: docs/results/method-tuning.md#feature_kl
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..errors import UserError
from ..models.split import split_model
from .base import LossOutput, Method, context
from .registry import register_method

SCHEDULES = ("joint", "alternate")
UPDATES = ("mapping_and_features", "mapping")


def masked_out(x: torch.Tensor, mask: torch.Tensor, baseline: float = 0.0) -> torch.Tensor:
    """x' = x * (1 - m) + baseline * m: the input with the masked region replaced by ``baseline``."""
    return x * (1 - mask) + baseline * mask


def feature_kl_term(features, mapping, h: torch.Tensor, x_masked: torch.Tensor,
                    detach_features: bool = True) -> torch.Tensor:
    """Mean over examples of KL(softmax(f(x')) || softmax(g(h))). The target f(x') is computed without
    a graph; with ``detach_features`` h is detached too, so the gradient reaches g only."""
    with torch.no_grad():
        target = F.log_softmax(features(x_masked).flatten(1), dim=1)
    mapped = F.log_softmax(mapping(h.detach() if detach_features else h).flatten(1), dim=1)
    return F.kl_div(mapped, target, reduction="batchmean", log_target=True)


@register_method
class FeatureKL(Method):
    """CE on c(g(f(x))) plus lam * KL(softmax(f(x * (1 - m))) || softmax(g(f(x)))) (Tao & Shokri)."""

    name = "feature_kl"
    defaults = {"lam": 10000.0, "update": "mapping_and_features", "schedule": "joint", "baseline": 0.0}
    choices = {"schedule": SCHEDULES, "update": UPDATES}
    bounds = {"lam": (0.0, None)}
    paper = "Tao & Shokri, Machine Learning from Explanations (poster)"
    standalone = True  # needs a split model; mask = 0 on annotated examples is not ERM (see module docstring)
    needs_split_model = True
    composable = False
    not_composable = ("it runs the split model part by part (features, mapping, classify) and, with "
                      "schedule='alternate', leaves out the cross-entropy on every other step")

    def check_model(self, model):
        split_model(model)

    def loss(self, model, batch, ctx=None):
        ctx = context(ctx)
        if self.schedule == "alternate" and dist.is_available() and dist.is_initialized():
            raise UserError("method 'feature_kl': schedule='alternate' leaves parameters without gradients, "
                            "which DistributedDataParallel refuses; use schedule='joint'")
        features, mapping, classify = split_model(model)
        h = features(batch.x)
        logits = classify(mapping(h))
        ce = F.cross_entropy(logits, batch.y)
        keep = batch.has_mask
        can_kl = self.lam > 0 and bool(keep.any())
        do_kl = can_kl and (self.schedule == "joint" or ctx.step % 2 == 1)
        do_ce = self.schedule == "joint" or not do_kl  # "alternate": odd steps are KL steps when they can be
        if do_kl:
            x, mask = (batch.x, batch.mask) if bool(keep.all()) else (batch.x[keep], batch.mask[keep])
            kl = feature_kl_term(features, mapping, h if bool(keep.all()) else h[keep],
                                 masked_out(x, mask, self.baseline), detach_features=self.update == "mapping")
            kl = kl * keep.to(kl.dtype).mean()  # mean over the batch, un-annotated examples counting 0
        else:
            kl = ce.new_zeros(())
        total = (ce + self.lam * kl) if do_ce else self.lam * kl
        return LossOutput(total, logits, {"ce": ce.detach(), "feature_kl": kl.detach()})
