"""Candidate regions that are unusual for their position, and how label-exclusive a region's look is.

Two rules that need no mask, for telling a shortcut (a sticker, a stamp, a ruler) from the object a model
should read:
- **atypicality** per pixel: ``z = mean_c |x_c - med_c| / (MAD_c + floor)``, the median ``med`` and the
  median absolute deviation ``MAD`` taken per pixel and channel over (up to ``REFERENCE_LIMIT`` evenly
  spaced) examples of the split. An artefact that appears in few images is far from what images usually
  show at that position; an object present in every image (a lesion in the centre) is not. Candidate
  regions are the largest connected components of ``z >= threshold``.
- **label purity** of a candidate: among the ``k`` candidates of *other* examples nearest to it in mean
  input value (its descriptor), the share whose example has the same label. A shortcut recurs with the
  same look in one class only (it is what makes it a shortcut); a part of the object looks alike in
  several classes.
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from .postprocess import largest_components

#: at most this many evenly spaced examples give the per-pixel median and MAD
REFERENCE_LIMIT = 256
#: added to the MAD (in input units) so that pixels constant over the reference do not divide by zero
MAD_FLOOR = 0.01


def reference_statistics(dataset, batch_size: int = 256, limit: int = REFERENCE_LIMIT):
    """(median, MAD), each (C, H, W) float on the CPU, per pixel and channel over at most ``limit`` evenly
    spaced examples of ``dataset``."""
    n = len(dataset)
    if n == 0:
        raise UserError(f"{getattr(dataset, 'name', 'dataset')}: atypicality needs at least one example")
    step = max(1, math.ceil(n / limit))
    rows, start = [], 0
    for batch in dataset.batches(batch_size):
        x = batch.x.detach().float().cpu()
        index = torch.arange(start, start + len(x))
        rows.append(x[index % step == 0])
        start += len(x)
    sample = torch.cat(rows)
    median = sample.median(0).values
    mad = (sample - median).abs().median(0).values
    return median, mad


def atypicality(x: torch.Tensor, median: torch.Tensor, mad: torch.Tensor, floor: float = MAD_FLOOR) -> torch.Tensor:
    """(B, H, W): ``mean_c |x_c - median_c| / (mad_c + floor)`` for ``x`` (B, C, H, W)."""
    x = x.detach().float().cpu()
    if x.shape[1:] != median.shape:
        raise UserError(f"atypicality: inputs of shape {tuple(x.shape[1:])} but reference of {tuple(median.shape)}")
    return ((x - median).abs() / (mad + floor)).mean(1)


def atypical_candidates(z: torch.Tensor, threshold: float, min_area: int, candidates: int, connectivity: int = 8,
                        dilate: int = 0) -> list[torch.Tensor]:
    """Per example of the atypicality maps ``z`` (N, H, W), bool (K, H, W): the ``candidates`` largest
    connected components of ``z >= threshold`` with at least ``min_area`` pixels, dilated by ``dilate``."""
    return largest_components(z >= threshold, min_area, candidates, connectivity, dilate)


def label_purity(descriptors: torch.Tensor, labels: torch.Tensor, owners: torch.Tensor, k: int) -> torch.Tensor:
    """(M,) float64 for M candidates: the share of the ``k`` nearest (Euclidean, in ``descriptors`` (M, D))
    candidates with another owner (the example it comes from, ``owners`` (M,)) whose ``labels`` (M,)
    equal its own; fewer neighbours when fewer candidates of other examples exist, 0 when there are none.
    Ties in distance: the earlier candidate first."""
    m = len(descriptors)
    out = torch.zeros(m, dtype=torch.float64)
    if m == 0:
        return out
    d = torch.cdist(descriptors.double(), descriptors.double())
    d[owners[:, None] == owners[None, :]] = float("inf")
    for i in range(m):
        finite = torch.isfinite(d[i])
        count = min(k, int(finite.sum()))
        if count == 0:
            continue
        order = torch.argsort(d[i], stable=True)[:count]
        out[i] = (labels[order] == labels[i]).double().mean()
    return out
