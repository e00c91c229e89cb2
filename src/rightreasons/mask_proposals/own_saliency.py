"""Masks proposed from a model's own saliency (``--source saliency``): the compact regions a (typically
ERM) model relies on, checked by occluding them. The candidate regions come from the saliency or from the
pixels unusual for their position (:mod:`.atypical`)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import model_device
from ..errors import UserError
from ..ops.modes import eval_mode
from .atypical import atypical_candidates, atypicality, label_purity, reference_statistics
from .options import CANDIDATE_SOURCES, CHOICES, DEFAULTS, SELECTIONS, _check_number, _check_postprocess, _image_shape
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
                  ig_steps: int = 32, candidates_from: str = DEFAULTS["candidates_from"],
                  atypical_threshold: float = DEFAULTS["atypical_threshold"],
                  min_purity: float = DEFAULTS["min_purity"], purity_k: int = DEFAULTS["purity_k"],
                  return_details: bool = False):
    """Bool masks (N, 1, H, W) on the CPU, 1 = the region the model relies on. Candidate regions per
    example: ``candidates_from="saliency"``: the connected components of :func:`postprocess` on the
    model's :func:`saliency` (same parameters); ``"atypical"``: those of the pixels whose
    :func:`~.atypical.atypicality` is at least ``atypical_threshold`` (``min_area``, ``dilate`` and
    ``connectivity`` apply alike). ``choose="largest"``: the ``components`` largest; ``choose="occlusion"``:
    of the ``candidates`` largest, the ``components`` whose :func:`occluded` version lowers the predicted
    class's log-probability most. ``select="relied"``: an example keeps its proposal only if occluding it
    lowers that log-probability by ``>= min_drop`` and it covers at most ``max_fraction`` of the image (a
    rule on the model alone: the model relies on a compact region); others get an empty mask. With
    ``min_purity > 0`` only candidates that pass those two tests (with ``select="relied"``) and whose
    :func:`~.atypical.label_purity` among all such candidates (``purity_k`` neighbours) is at least
    ``min_purity`` can be chosen (of the ``candidates`` largest, with either ``choose``). The model runs in
    eval mode (restored) on its own device. With ``return_details``: ``(masks, selected (N,) bool, drop
    (N,))``, ``drop`` the largest drop of a kept component (NaN without one)."""
    if choose not in CHOICES:
        raise UserError(f"propose_masks: choose must be one of {', '.join(CHOICES)}, got {choose!r}")
    if select not in SELECTIONS:
        raise UserError(f"propose_masks: select must be one of {', '.join(SELECTIONS)}, got {select!r}")
    if candidates_from not in CANDIDATE_SOURCES:
        raise UserError(f"propose_masks: candidates_from must be one of {', '.join(CANDIDATE_SOURCES)}, "
                        f"got {candidates_from!r}")
    _check_number("min_drop", min_drop, -1e9, 1e9)
    _check_number("max_fraction", max_fraction, 0, 1, open_low=True)
    _check_number("atypical_threshold", atypical_threshold, 0, 1e9, open_low=True)
    _check_number("min_purity", min_purity, 0, 1)
    _check_number("purity_k", purity_k, 1, 10**6, integer=True)
    _check_postprocess(threshold, top_fraction, dilate, min_area, components, connectivity)
    _check_number("candidates", candidates, 1, 10**6, integer=True)
    pool = max(candidates, components) if choose == "occlusion" or min_purity > 0 else components
    if candidates_from == "saliency":
        s = saliency(model, dataset, attribution, batch_size, ig_steps)
        parts = candidate_components(s, threshold, top_fraction, min_area, pool, connectivity, dilate)
        n, h, w = s.shape
    else:
        _, h, w = _image_shape(dataset)
        median, mad = reference_statistics(dataset, batch_size)
        parts = [p for batch in dataset.batches(batch_size)
                 for p in atypical_candidates(atypicality(batch.x, median, mad), atypical_threshold, min_area, pool,
                                              connectivity, dilate)]
        n = len(parts)
    drops, looks, labels = [], [], []
    device = model_device(model)
    with eval_mode(model):
        start = 0
        for batch in dataset.batches(batch_size):
            x = batch.x.to(device)
            chunk = parts[start:start + len(x)]
            drops += occlusion_drops(model, x, chunk)
            if min_purity > 0:
                xc = batch.x.detach().float().cpu()
                looks += [torch.stack([xc[i][:, q].mean(1) for q in p]) if len(p) else torch.zeros(0, xc.shape[1])
                          for i, p in enumerate(chunk)]
                labels += [int(v) for v in batch.y]
            start += len(x)
    eligible = _eligible(parts, drops, looks, labels, select, min_drop, max_fraction, min_purity, purity_k)
    masks = torch.zeros(n, 1, h, w, dtype=torch.bool)
    drop = torch.full((n,), float("nan"))
    for i, (p, d, ok) in enumerate(zip(parts, drops, eligible)):
        if not ok.any():
            continue
        if choose == "occlusion":
            order = torch.argsort(torch.where(ok, d, -float("inf")), descending=True, stable=True)
        else:
            order = torch.arange(len(p))
        order = order[ok[order]][:components]
        masks[i, 0] = p[order].any(0)
        drop[i] = d[order].max()
    selected = masks.flatten(1).any(1)
    if select == "relied":
        selected &= torch.nan_to_num(drop, nan=-float("inf")) >= min_drop
        selected &= masks.flatten(1).float().mean(1) <= max_fraction
    masks &= selected[:, None, None, None]
    return (masks, selected, drop) if return_details else masks


def _eligible(parts, drops, looks, labels, select, min_drop, max_fraction, min_purity, purity_k) -> list[torch.Tensor]:
    """Per example, (K,) bool: the candidates that may be chosen (all of them unless ``min_purity > 0``)."""
    if min_purity <= 0:
        return [torch.ones(len(p), dtype=torch.bool) for p in parts]
    passing = []
    for p, d in zip(parts, drops):
        ok = torch.ones(len(p), dtype=torch.bool)
        if select == "relied" and len(p):
            ok = (d >= min_drop) & (p.flatten(1).float().mean(1) <= max_fraction)
        passing.append(ok)
    index = [(i, j) for i, ok in enumerate(passing) for j in torch.nonzero(ok).flatten().tolist()]
    if not index:
        return passing
    purity = label_purity(torch.stack([looks[i][j] for i, j in index]), torch.tensor([labels[i] for i, _ in index]),
                          torch.tensor([i for i, _ in index]), purity_k)
    for (i, j), value in zip(index, purity.tolist()):
        passing[i][j] = value >= min_purity
    return passing
