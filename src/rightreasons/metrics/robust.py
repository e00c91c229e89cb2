"""Robustness inside the mask (Heo et al., NeurIPS 2023): accuracy when the masked features are attacked
with masked PGD, and accuracy certified by interval bound propagation over the mask box.

Both treat each example's box as x +- eps * m, clipped to ``dataset.input_range``, with m the effective
mask: an un-annotated example (``has_mask`` False) or one with an empty mask has the empty box {x},
so it counts as correct exactly when its clean prediction is (clean accuracy). The model runs in
eval mode (restored afterwards); the global RNG is never touched. Outputs that are not finite (batch,
num_classes) logits, and margin bounds that are not finite, raise a one-line ``UserError`` naming the
dataset (metrics.logits).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import nn

from ..data.dataset import ExplanationDataset, capped_batch_size
from ..data.text.embedded import explanation_space
from ..errors import UserError
from ..ops.interval_bounds import layers, margin_bounds, mask_box
from ..ops.masked_pgd import masked_pgd
from ..ops.modes import eval_mode
from .logits import check_logits, checked_outputs


def _finish(correct: int, total: int, what: str, name: str) -> float:
    if total == 0:
        warnings.warn(f"{what}: dataset {name!r} is empty; returning NaN", stacklevel=3)
        return math.nan
    return correct / total


def masked_pgd_accuracy(
    model: nn.Module,
    dataset: ExplanationDataset,
    eps: float,
    steps: int = 20,
    step_size: Optional[float] = None,
    batch_size: int = 1000,
    random_start: bool = False,
    generator: Optional[torch.Generator] = None,
) -> float:
    """Share of examples still classified correctly after masked PGD (CE ascent, ``steps`` sign steps of
    ``step_size``, default 2.5 * eps / steps) inside x +- eps * m; ``random_start`` draws from ``generator``."""
    model, dataset = explanation_space(model, dataset)
    correct = total = 0
    where = f"dataset {dataset.name!r}"
    with checked_outputs(model, dataset.num_classes, where), eval_mode(model):
        for batch in dataset.batches(capped_batch_size(dataset, batch_size)):
            x_adv = masked_pgd(model, batch.x, batch.y, batch.effective_mask, eps, steps, step_size=step_size,
                               bounds=dataset.input_range, random_start=random_start, generator=generator)
            with torch.no_grad():
                logits = check_logits(model(x_adv), dataset.num_classes, where, len(batch))
                correct += int((logits.argmax(1) == batch.y).sum())
            total += len(batch)
    return _finish(correct, total, "masked_pgd_accuracy", dataset.name)


def ibp_certified_accuracy(model: nn.Module, dataset: ExplanationDataset, eps: float, batch_size: int = 1000) -> float:
    """Share of examples whose label provably wins over the whole box x +- eps * m: the margin bound
    (specification folded into the last Linear layer) of z_y - z_k is > 0 for every k != y.
    Raises ``UserError`` if the model has a layer interval bounds do not support."""
    if isinstance(model, torch.jit.ScriptModule):
        raise UserError("interval bounds need the model's layers; a TorchScript module (torch.jit) hides them")
    model, dataset = explanation_space(model, dataset)
    correct = total = 0
    with eval_mode(model), torch.no_grad():
        layers(model)  # fail before any work, naming every unsupported module
        for batch in dataset.batches(capped_batch_size(dataset, batch_size)):
            lower, upper = mask_box(batch.x, batch.effective_mask, eps, dataset.input_range)
            margins = margin_bounds(model, lower, upper, batch.y)
            if not bool(torch.isfinite(margins).all()):
                raise UserError(f"interval bounds of the model's outputs on dataset {dataset.name!r} are NaN or "
                                "infinite (are the model's weights finite?)")
            margins.scatter_(1, batch.y.view(-1, 1), math.inf)  # z_y - z_y = 0 is not a competitor
            correct += int((margins.min(1).values > 0).sum())
            total += len(batch)
    return _finish(correct, total, "ibp_certified_accuracy", dataset.name)


def robust_metrics(model: nn.Module, dataset: ExplanationDataset, eps: Optional[float] = None, steps: int = 20,
                   batch_size: int = 1000) -> dict:
    """The two robustness numbers for ``metrics.json`` and ``rightreasons evaluate``: masked PGD accuracy
    and IBP-certified accuracy over x +- eps * m (``eps`` default: the whole data range, hi - lo), with
    the eps and steps used. IBP is None (with ``ibp_note`` naming the layers) for a model interval bounds
    do not support; both are None when the data range is not finite (no box to search) and NaN when no
    example has a mask (every box is a point: the numbers would only repeat the clean accuracy)."""
    model, dataset = explanation_space(model, dataset)
    lo, hi = dataset.input_range
    if eps is None:
        eps = float(hi - lo) if math.isfinite(lo) and math.isfinite(hi) else None
    if eps is None:
        return {"masked_pgd_accuracy": None, "ibp_certified_accuracy": None, "robust_eps": None,
                "robust_note": f"{dataset.name}: input range ({lo}, {hi}) is not finite; give an eps"}
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise UserError(f"robust metrics: eps must be a finite number >= 0, got {eps!r}")
    out = {"robust_eps": float(eps), "pgd_steps": steps}
    if not bool(dataset.annotated(batch_size).any()):
        return {**out, "masked_pgd_accuracy": math.nan, "ibp_certified_accuracy": math.nan}
    out["masked_pgd_accuracy"] = masked_pgd_accuracy(model, dataset, eps, steps=steps, batch_size=batch_size)
    try:
        out["ibp_certified_accuracy"] = ibp_certified_accuracy(model, dataset, eps, batch_size=batch_size)
    except UserError as exc:
        out["ibp_certified_accuracy"], out["ibp_note"] = None, str(exc)
    return out
