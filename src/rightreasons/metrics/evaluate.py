"""evaluate(model, dataset) -> metrics dict: the numbers that say whether a model is right for the
right reasons (a text model's in its embedding space, data.text.embedded).
Runs in eval mode (restored afterwards) and never touches the global RNG. Outputs that are
not finite (batch, num_classes) logits raise a one-line ``UserError`` naming the dataset (metrics.logits)."""

from __future__ import annotations

import torch
from torch import nn

from ..data.dataset import ExplanationDataset, capped_batch_size
from ..data.text.embedded import explanation_space
from ..devices import model_device
from ..ops.modes import eval_mode
from .accuracy import accuracy_metrics
from .logits import check_logits, checked_outputs
from .saliency import MaskShareAccumulator


def predict(model: nn.Module, dataset: ExplanationDataset, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels for every example."""
    model, dataset = explanation_space(model, dataset)
    preds = []
    where = f"dataset {dataset.name!r}"
    device = model_device(model)
    with checked_outputs(model, dataset.num_classes, where), eval_mode(model), torch.no_grad():
        for batch in dataset.batches(capped_batch_size(dataset, batch_size)):
            batch = batch.to(device)
            preds.append(check_logits(model(batch.x), dataset.num_classes, where, len(batch)).argmax(1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def evaluate(
    model: nn.Module,
    dataset: ExplanationDataset,
    batch_size: int = 1000,
    mask_share: bool = True,
) -> dict:
    """accuracy, worst/mean-group and per-group accuracy, macro accuracy and (if ``mask_share``) the
    share of input-gradient mass inside the mask (see metrics.saliency) and the wrong-reason score
    (share of the binarised saliency inside the mask, see metrics.wrong_reason)."""
    model, dataset = explanation_space(model, dataset)
    share = MaskShareAccumulator() if mask_share else None
    preds = []
    where = f"dataset {dataset.name!r}"
    device = model_device(model)
    with checked_outputs(model, dataset.num_classes, where), eval_mode(model):
        for batch in dataset.batches(capped_batch_size(dataset, batch_size)):
            batch = batch.to(device)
            if share is not None:
                logits = share.update(model, batch, where, dataset.num_classes)  # checked there
            else:
                with torch.no_grad():
                    logits = check_logits(model(batch.x), dataset.num_classes, where, len(batch))
            preds.append(logits.argmax(1).cpu())
    pred = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
    out = accuracy_metrics(pred, dataset.y, dataset.group)
    if share is not None:
        out["mask_gradient_share"] = share.result(dataset.name)
        out["wrong_reason"] = share.wrong_reason_result()
    return out
