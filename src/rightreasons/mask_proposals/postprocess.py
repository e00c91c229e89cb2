"""From a saliency map to a mask: threshold (or top fraction), connected components, minimum area,
dilation."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import UserError
from .agreement import _flat
from .options import DEFAULTS, _check_postprocess


def _neighbour_max(labels: torch.Tensor, connectivity: int) -> torch.Tensor:
    """Per pixel, the maximum of ``labels`` (N, 1, H, W) over the pixel and its 4 or 8 neighbours."""
    if connectivity == 8:
        return F.max_pool2d(labels, 3, stride=1, padding=1)
    padded = F.pad(labels, (1, 1, 1, 1))
    centre = padded[..., 1:-1, 1:-1]
    return torch.stack([centre, padded[..., :-2, 1:-1], padded[..., 2:, 1:-1],
                        padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]]).amax(0)


def connected_components(binary: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """Labels (N, H, W) int64 of the 4- or 8-connected components of ``binary`` (N, H, W): 0 off, each
    component the largest ``1 + flat index`` among its pixels (propagated by repeated neighbour maxima)."""
    on = binary.bool()
    n, h, w = on.shape
    index = torch.arange(1, h * w + 1, dtype=torch.float64).reshape(1, 1, h, w).expand(n, 1, h, w)
    mask = on[:, None].double()
    labels = index * mask
    while True:
        grown = _neighbour_max(labels, connectivity) * mask
        if torch.equal(grown, labels):
            return labels[:, 0].long()
        labels = grown


def _maps(saliency_map: torch.Tensor, where: str = "postprocess") -> torch.Tensor:
    """``saliency_map`` as finite float (N, H, W) on the CPU (from (N, H, W) or (N, 1, H, W))."""
    s = saliency_map.detach().float().cpu()
    if s.dim() == 4 and s.shape[1] == 1:
        s = s[:, 0]
    if s.dim() != 3:
        raise UserError(f"{where}: saliency must have shape (N, H, W) or (N, 1, H, W), got "
                        f"{tuple(saliency_map.shape)}")
    if not torch.isfinite(s).all():
        raise UserError(f"{where}: saliency has NaN or infinite values")
    return s


def _drop_small(binary: torch.Tensor, min_area: int, connectivity: int) -> torch.Tensor:
    """``binary`` (N, H, W) bool without its ``connectivity``-connected components of fewer than
    ``min_area`` pixels."""
    if min_area <= 1 or not binary.any():
        return binary.bool()
    n, h, w = binary.shape
    labels = connected_components(binary, connectivity)
    offset = labels + (torch.arange(n) * (h * w + 1))[:, None, None]
    sizes = torch.bincount(offset.flatten(), minlength=n * (h * w + 1))
    return (labels > 0) & (sizes[offset] >= min_area)


def _dilate(binary: torch.Tensor, dilate: int) -> torch.Tensor:
    """``binary`` (..., H, W) bool dilated by ``dilate`` pixels: a (2 dilate + 1)-square max pool."""
    if not dilate or not binary.numel():
        return binary.bool()
    shape = binary.shape
    flat = binary.reshape(-1, 1, *shape[-2:]).float()
    return F.max_pool2d(flat, 2 * dilate + 1, stride=1, padding=dilate).reshape(shape).bool()


def candidate_components(saliency_map: torch.Tensor, threshold: float = 0.3, top_fraction: Optional[float] = None,
                         min_area: int = 4, candidates: int = 1, connectivity: int = 8,
                         dilate: int = 0) -> list[torch.Tensor]:
    """Per example, bool (K, H, W): the ``candidates`` largest ``connectivity``-connected components of
    the pixels with ``s >= threshold * max(s)`` (with ``top_fraction``: ``s >= `` the
    ``ceil(top_fraction * H * W)``-th largest value instead; never ``s == 0``) that have at least
    ``min_area`` pixels, largest first (ties: the later label first), each dilated by ``dilate`` pixels."""
    _check_postprocess(threshold, top_fraction, dilate, min_area, candidates, connectivity)
    s = _maps(saliency_map)
    n, h, w = s.shape
    if n == 0:
        return []
    flat = s.flatten(1)
    if top_fraction is None:
        cut = threshold * flat.amax(1)
    else:
        k = min(h * w, max(1, math.ceil(top_fraction * h * w)))
        cut = flat.sort(1, descending=True).values[:, k - 1]
    binary = (s >= cut[:, None, None]) & (s > 0)
    return largest_components(binary, min_area, candidates, connectivity, dilate)


def largest_components(binary: torch.Tensor, min_area: int, candidates: int, connectivity: int = 8,
                       dilate: int = 0) -> list[torch.Tensor]:
    """Per example of ``binary`` (N, H, W), bool (K, H, W): its ``candidates`` largest
    ``connectivity``-connected components that have at least ``min_area`` pixels, largest first (ties: the
    later label first), each dilated by ``dilate`` pixels."""
    n, h, w = binary.shape
    labels = connected_components(binary, connectivity)
    out = []
    for i in range(n):
        ids, sizes = torch.unique(labels[i][labels[i] > 0], return_counts=True)
        order = sorted(range(len(ids)), key=lambda j: (-int(sizes[j]), -int(ids[j])))[:candidates]
        keep = [int(ids[j]) for j in order if int(sizes[j]) >= min_area]
        parts = torch.stack([labels[i] == c for c in keep]) if keep else torch.zeros(0, h, w, dtype=torch.bool)
        out.append(_dilate(parts, dilate) if len(parts) else parts)
    return out


def postprocess(saliency_map: torch.Tensor, threshold: float = DEFAULTS["threshold"],
                top_fraction: Optional[float] = DEFAULTS["top_fraction"], dilate: int = DEFAULTS["dilate"],
                min_area: int = DEFAULTS["min_area"], components: int = DEFAULTS["components"],
                connectivity: int = DEFAULTS["connectivity"]) -> torch.Tensor:
    """Bool masks (N, 1, H, W) from saliency maps (N, H, W) or (N, 1, H, W), per example: pixels with
    ``s >= threshold * max(s)`` (with ``top_fraction``: the ``ceil(top_fraction * H * W)`` most salient,
    ties included), never pixels with ``s == 0``; then the ``components`` largest ``connectivity``-
    connected components, minus those of fewer than ``min_area`` pixels; then dilated by ``dilate``
    pixels (a (2 dilate + 1)-square max pool). See :func:`candidate_components`."""
    parts = candidate_components(saliency_map, threshold, top_fraction, min_area, components, connectivity, dilate)
    h, w = saliency_map.shape[-2:]
    return torch.stack([p.any(0) for p in parts])[:, None] if parts else torch.zeros(0, 1, h, w, dtype=torch.bool)


def saliency_share(saliency_map: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) the share of each example's saliency mass inside its mask: ``sum(s * m) / sum(s)`` (0 where
    ``sum(s)`` is 0)."""
    s = saliency_map.float().reshape(saliency_map.shape[0], -1)
    m = _flat(masks).float()
    total = s.sum(1)
    return torch.where(total > 0, (s * m).sum(1) / total.clamp_min(1e-30), torch.zeros_like(total))
