"""Per-pixel saliency of an image model: ``s = sum_c |d sum_k log p_k / dx_c|`` (the input gradient) or
``sum_c |IG_c|`` (integrated gradients), per example divided by its maximum."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import model_device
from ..errors import UserError
from ..ops.input_gradients import input_gradients
from ..ops.integrated_gradients import integrated_gradients
from ..ops.modes import eval_mode
from .options import ATTRIBUTIONS, _check_number, _image_shape


def _log_prob_sum(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1).sum(1)


def saliency(model: nn.Module, dataset, attribution: str = "gradient", batch_size: int = 64,
             ig_steps: int = 32) -> torch.Tensor:
    """(N, H, W) float on the CPU: ``sum_c |attribution|`` of ``sum_k log p_k`` per pixel, divided by
    its per-example maximum (all zeros where the attribution is zero). ``attribution``: ``gradient``
    (input gradient) or ``ig`` (integrated gradients from a zero baseline, ``ig_steps`` steps)."""
    _image_shape(dataset)
    if attribution not in ATTRIBUTIONS:
        raise UserError(f"propose_masks: attribution must be one of {', '.join(ATTRIBUTIONS)}, got {attribution!r}")
    _check_number("batch_size", batch_size, 1, 10**9, integer=True)
    _check_number("ig_steps", ig_steps, 1, 10**6, integer=True)
    device = model_device(model)
    out = []
    with eval_mode(model):
        for batch in dataset.batches(batch_size):
            x = batch.x.to(device)
            if attribution == "gradient":
                grad, _ = input_gradients(model, x, "log_prob_sum")
            else:
                grad = integrated_gradients(model, x, None, _log_prob_sum, steps=ig_steps)
            out.append(grad.detach().abs().sum(1).float().cpu())
    if not out:
        return torch.zeros(0, *_image_shape(dataset)[1:])
    s = torch.cat(out)
    peak = s.flatten(1).amax(1).clamp_min(torch.finfo(s.dtype).tiny)
    return s / peak[:, None, None]
