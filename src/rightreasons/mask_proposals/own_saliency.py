"""Masks proposed from a model's own saliency (``--source saliency``): the compact regions a (typically
ERM) model relies on, checked by occluding them."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import model_device
from ..errors import UserError
from ..ops.modes import eval_mode
from .options import CHOICES, DEFAULTS, SELECTIONS, _check_number, _check_postprocess
from .postprocess import candidate_components
from .saliency import saliency


def occluded(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``x`` (C, H, W) with the pixels of each mask (K, H, W) set to the per-channel median of the pixels
    outside it (of all pixels when the mask covers the image): (K, C, H, W)."""
    out = x.unsqueeze(0).repeat(len(masks), 1, 1, 1)
    for k, m in enumerate(masks):
        m = m.to(x.device)
        outside = ~m if (~m).any() else torch.ones_like(m)
        fill = x[:, outside].median(1).values
        out[k] = torch.where(m, fill[:, None, None], x)
    return out


def occlusion_drops(model: nn.Module, x: torch.Tensor, parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per example of ``x`` (B, C, H, W), the drop in the log-probability of the predicted class when
    each candidate region of ``parts[i]`` (K_i, H, W) is :func:`occluded`: (K_i,) on the CPU."""
    with torch.no_grad():
        base = F.log_softmax(model(x), 1)
        out = []
        for i, p in enumerate(parts):
            if not len(p):
                out.append(torch.zeros(0))
                continue
            c = int(base[i].argmax())
            after = F.log_softmax(model(occluded(x[i], p)), 1)[:, c]
            out.append((base[i, c] - after).float().cpu())
    return out


def propose_masks(model: nn.Module, dataset, threshold: float = DEFAULTS["threshold"],
                  top_fraction: Optional[float] = DEFAULTS["top_fraction"], dilate: int = DEFAULTS["dilate"],
                  min_area: int = DEFAULTS["min_area"], components: int = DEFAULTS["components"],
                  attribution: str = DEFAULTS["attribution"], batch_size: int = 64,
                  connectivity: int = DEFAULTS["connectivity"], choose: str = DEFAULTS["choose"],
                  candidates: int = DEFAULTS["candidates"], select: str = DEFAULTS["select"],
                  min_drop: float = DEFAULTS["min_drop"], max_fraction: float = DEFAULTS["max_fraction"],
                  ig_steps: int = 32, return_details: bool = False):
    """Bool masks (N, 1, H, W) on the CPU, 1 = the region the model relies on: :func:`saliency`, then the
    connected components of :func:`postprocess` (same parameters). ``choose="largest"``: the
    ``components`` largest; ``choose="occlusion"``: of the ``candidates`` largest, the ``components``
    whose :func:`occluded` version lowers the predicted class's log-probability most. ``select="relied"``:
    an example keeps its proposal only if occluding it lowers that log-probability by ``>= min_drop``
    and it covers at most ``max_fraction`` of the image (a rule on the model alone: the model relies on a
    compact region); others get an empty mask. The model runs in eval mode (restored) on its
    own device. With ``return_details``: ``(masks, selected (N,) bool, drop (N,))``, ``drop`` the largest
    drop of a kept component (NaN without one)."""
    if choose not in CHOICES:
        raise UserError(f"propose_masks: choose must be one of {', '.join(CHOICES)}, got {choose!r}")
    if select not in SELECTIONS:
        raise UserError(f"propose_masks: select must be one of {', '.join(SELECTIONS)}, got {select!r}")
    _check_number("min_drop", min_drop, -1e9, 1e9)
    _check_number("max_fraction", max_fraction, 0, 1, open_low=True)
    _check_postprocess(threshold, top_fraction, dilate, min_area, components, connectivity)
    _check_number("candidates", candidates, 1, 10**6, integer=True)
    s = saliency(model, dataset, attribution, batch_size, ig_steps)
    pool = max(candidates, components) if choose == "occlusion" else components
    parts = candidate_components(s, threshold, top_fraction, min_area, pool, connectivity, dilate)
    n, h, w = s.shape
    masks = torch.zeros(n, 1, h, w, dtype=torch.bool)
    drop = torch.full((n,), float("nan"))
    device = model_device(model)
    with eval_mode(model):
        start = 0
        for batch in dataset.batches(batch_size):
            x = batch.x.to(device)
            chunk = parts[start:start + len(x)]
            drops = occlusion_drops(model, x, chunk)
            for i, (p, d) in enumerate(zip(chunk, drops)):
                if not len(p):
                    continue
                order = (torch.argsort(d, descending=True, stable=True) if choose == "occlusion"
                         else torch.arange(len(p)))[:components]
                union = p[order].any(0)
                masks[start + i, 0] = union
                drop[start + i] = d[order].max()
            start += len(x)
    selected = masks.flatten(1).any(1)
    if select == "relied":
        selected &= torch.nan_to_num(drop, nan=-float("inf")) >= min_drop
        selected &= masks.flatten(1).float().mean(1) <= max_fraction
    masks &= selected[:, None, None, None]
    return (masks, selected, drop) if return_details else masks
