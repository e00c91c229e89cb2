"""Masks from a teacher's attributions (``--source teacher``), as the "targeted activation penalty" builds
them from a pre-trained model instead of ground-truth annotations: Zhang, Williams & Toni, "Targeted
Activation Penalties Help CNNs Ignore Spurious Signals", AAAI 2024.

The teacher is a model that looks at the right things (trained on clean data, or with true masks); what
it ignores is what the student must ignore. Per example, with the teacher's saliency
``s = sum_c |d sum_k log p_k / dx_c|`` (or ``sum_c |IG_c|``, :func:`saliency`), optionally smoothed
``s <- mean of s over the K x K window around each pixel`` (``smooth=K``, the window cut at the border),
and ``Q_q(s)`` its ``q``-quantile over the example's H x W pixels (linear interpolation between order
statistics, as ``numpy.quantile``)::

    M = { i : s_i < Q_q(s) }  union  { i : s_i = min(s) }      (M empty when s is constant)

so about a share ``q`` of the pixels, the least salient; pixels tied at the minimum (typically exact
zeros: what the teacher does not read at all) are masked together. Then connected components of ``M``
with fewer than ``min_area`` pixels are dropped and ``M`` is dilated by ``dilate`` pixels. Every
example gets a mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .options import TEACHER_DEFAULTS, _check_connectivity, _check_number
from .postprocess import _dilate, _drop_small, _maps
from .saliency import saliency

WHERE = "teacher_masks"


def _box_mean(s: torch.Tensor, k: int) -> torch.Tensor:
    """(N, H, W): per pixel, the mean of ``s`` over the ``k x k`` window around it (the image's pixels only)."""
    if k <= 1:
        return s
    pad = ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)
    total = F.avg_pool2d(F.pad(s[:, None], pad), k, stride=1)
    count = F.avg_pool2d(F.pad(torch.ones_like(s[:1, None]), pad), k, stride=1)
    return (total / count)[:, 0]


def _quantile(flat: torch.Tensor, q: float) -> torch.Tensor:
    """(N,) float64: the ``q``-quantile of each row, linearly interpolated (``numpy.quantile``'s default)."""
    values = flat.double().sort(1).values
    pos = q * (flat.shape[1] - 1)
    lo, hi = int(pos // 1), min(int(pos // 1) + 1, flat.shape[1] - 1)
    frac = pos - lo
    return values[:, lo] + frac * (values[:, hi] - values[:, lo])


def quantile_masks(saliency_map: torch.Tensor, quantile: float = TEACHER_DEFAULTS["quantile"],
                   smooth: int = TEACHER_DEFAULTS["smooth"], dilate: int = TEACHER_DEFAULTS["dilate"],
                   min_area: int = TEACHER_DEFAULTS["min_area"],
                   connectivity: int = TEACHER_DEFAULTS["connectivity"]) -> torch.Tensor:
    """Bool masks (N, 1, H, W), 1 = ignore, from a teacher's saliency maps (N, H, W) or (N, 1, H, W): the
    pixels below the per-example ``quantile`` (and those at the minimum; none of a constant map), the map
    first averaged over ``smooth x smooth`` windows (0: not), then components under ``min_area`` pixels
    dropped and the rest dilated by ``dilate`` pixels. See the module docstring."""
    _check_number("quantile", quantile, 0, 1, open_low=True, open_high=True, where=WHERE)
    _check_number("smooth", smooth, 0, 10_000, integer=True, where=WHERE)
    _check_number("dilate", dilate, 0, 10_000, integer=True, where=WHERE)
    _check_number("min_area", min_area, 0, 10**9, integer=True, where=WHERE)
    _check_connectivity(connectivity, WHERE)
    s = _maps(saliency_map, WHERE)
    n, h, w = s.shape
    if n == 0:
        return torch.zeros(0, 1, h, w, dtype=torch.bool)
    s = _box_mean(s, smooth).double()
    flat = s.flatten(1)
    cut, low, high = _quantile(flat, quantile), flat.amin(1), flat.amax(1)
    masks = (s < cut[:, None, None]) | (s == low[:, None, None])
    masks &= (high > low)[:, None, None]
    masks = _drop_small(masks, min_area, connectivity)
    return _dilate(masks, dilate)[:, None]


def teacher_masks(model: nn.Module, dataset, quantile: float = TEACHER_DEFAULTS["quantile"],
                  smooth: int = TEACHER_DEFAULTS["smooth"], dilate: int = TEACHER_DEFAULTS["dilate"],
                  min_area: int = TEACHER_DEFAULTS["min_area"], connectivity: int = TEACHER_DEFAULTS["connectivity"],
                  attribution: str = TEACHER_DEFAULTS["attribution"], batch_size: int = 64,
                  ig_steps: int = 32) -> torch.Tensor:
    """Bool masks (N, 1, H, W) on the CPU, 1 = what the teacher ``model`` ignores on each example of
    ``dataset``: :func:`quantile_masks` of the teacher's :func:`saliency` (``attribution`` ``gradient`` or
    ``ig``). The model runs in eval mode (restored) on its own device."""
    quantile_masks(torch.zeros(0, 1, 1), quantile, smooth, dilate, min_area, connectivity)  # settings first
    return quantile_masks(saliency(model, dataset, attribution, batch_size, ig_steps), quantile, smooth, dilate,
                          min_area, connectivity)
