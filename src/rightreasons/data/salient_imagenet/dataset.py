"""The splits of Salient ImageNet: datasets that keep each example's core and spurious soft masks for the metrics
(rightreasons.metrics.salient), in memory (:class:`SalientImageNetDataset`) or decoded per batch
(:class:`SalientStreamingDataset`, ``stream=true``). ``soft_batch(index)`` gives a batch and its
:class:`SoftMasks`: per example the pixel-wise maximum of its core masks and of its spurious masks, in [0, 1].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ...batch import Batch
from ...errors import DataError
from ..csv_common import SPLIT_NAMES
from ..dataset import ExplanationDataset
from ..streaming import StreamingImageDataset, WorkerPool, _positions
from .decoder import SalientDecoder


class SoftMasks(NamedTuple):
    """The soft masks of a batch: core and spurious (float (B, 1, H, W) in [0, 1], the maximum over the
    example's features of each kind) and whether the example has any mask of each kind (bool (B,))."""

    core: torch.Tensor
    spurious: torch.Tensor
    has_core: torch.Tensor
    has_spurious: torch.Tensor


def _as_soft(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 255 if t.dtype == torch.uint8 else t.float()


def _has_core(name: str, has_core, n: int) -> torch.Tensor:
    has_core = torch.as_tensor(has_core)
    if tuple(has_core.shape) != (n,):
        raise DataError(f"{name}: has_core has shape {tuple(has_core.shape)}; expected ({n},)")
    return has_core.bool()


class SalientImageNetDataset(ExplanationDataset):
    """An :class:`ExplanationDataset` with the core and spurious soft masks of each example (``core_mask``,
    ``spurious_mask``: (N, 1, H, W), uint8 0..255 or float in [0, 1]) and ``has_core``; ``has_mask`` says
    whether it has a spurious mask. ``normalization``: the (mean, std) per channel the inputs were
    normalised with (None: pixels in [0, 1]), so that noise can be added in pixel units."""

    def __init__(self, x, y, mask, group, has_mask, core_mask, spurious_mask, has_core, *,
                 normalization=None, **kwargs):
        super().__init__(x, y, mask, group, has_mask, **kwargs)
        if self.x.dim() != 4:
            raise DataError(f"{self.name}: x must be images (N, C, H, W) to have soft masks, got {tuple(self.x.shape)}")
        n, h, w = len(self), self.x.shape[2], self.x.shape[3]
        for what, t in (("core_mask", core_mask), ("spurious_mask", spurious_mask)):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n, 1, h, w):
                raise DataError(f"{self.name}: {what} must be a tensor of shape ({n}, 1, {h}, {w}), got "
                                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
            if t.dtype != torch.uint8 and (not t.is_floating_point() or (len(t) and not bool(((t >= 0) & (t <= 1))
                                                                                              .all()))):
                raise DataError(f"{self.name}: {what} must be uint8 (0..255) or float in [0, 1]")
        self.has_core = _has_core(self.name, has_core, n)
        self.core_mask, self.spurious_mask = core_mask, spurious_mask
        self.normalization = normalization

    def soft_batch(self, index) -> tuple[Batch, SoftMasks]:
        """The examples at ``index`` and their soft masks."""
        return self.batch(index), SoftMasks(_as_soft(self.core_mask[index]), _as_soft(self.spurious_mask[index]),
                                            self.has_core[index].reshape(-1), self.has_mask[index].reshape(-1))

    def subset(self, index: torch.Tensor) -> "SalientImageNetDataset":
        return SalientImageNetDataset(
            self.x[index], self.y[index], self.mask[index], self.group[index], self.has_mask[index],
            self.core_mask[index], self.spurious_mask[index], self.has_core[index], normalization=self.normalization,
            num_classes=self.num_classes, num_groups=self.num_groups, name=self.name, input_range=self.input_range)


class SalientStreamingDataset(StreamingImageDataset):
    """A :class:`StreamingImageDataset` of a :class:`SalientDecoder`, with :meth:`soft_batch` (decoded in this
    process, the image and all its masks at once) and ``has_core``."""

    def __init__(self, decoder: SalientDecoder, rows, y, group, has_mask, has_core, *, normalization=None,
                 **kwargs):
        super().__init__(decoder, rows, y, group, has_mask, **kwargs)
        self.has_core, self.normalization = _has_core(self.name, has_core, len(self)), normalization

    def soft_batch(self, index) -> tuple[Batch, SoftMasks]:
        pos = _positions(len(self), index)
        c, h, w = self.input_shape
        x = np.empty((len(pos), c, h, w), dtype=np.float32)
        planes = [np.empty((len(pos), 1, h, w), dtype=np.float32) for _ in range(3)]
        self.decoder.decode_salient(self.rows[pos.numpy()], x, *planes)
        xt = torch.from_numpy(x)
        batch = Batch(xt, self.y[pos], torch.from_numpy(planes[0]).expand(xt.shape), self.group[pos],
                      self.has_mask[pos])
        return batch, SoftMasks(torch.from_numpy(planes[1]) / 255, torch.from_numpy(planes[2]) / 255,
                                self.has_core[pos], self.has_mask[pos])

    def subset(self, index: torch.Tensor) -> "SalientStreamingDataset":
        pos = _positions(len(self), index)
        return SalientStreamingDataset(
            self.decoder, self.rows[pos.numpy()], self.y[pos], self.group[pos], self.has_mask[pos], self.has_core[pos],
            normalization=self.normalization, num_classes=self.num_classes, num_groups=self.num_groups,
            name=self.name, input_range=self.input_range, input_shape=self.input_shape, workers=self.workers,
            pin_memory=self.pin_memory, pool=self._pool)


def salient_splits(decoder: SalientDecoder, split: np.ndarray, y: np.ndarray, has_mask: list, has_core: list, *,
                   num_classes: int, normalization, input_range: tuple[float, float], stream: bool,
                   workers: int) -> dict:
    """Split name -> dataset of the decoder's examples (``split``: 0 / 1 / 2 for train / val / test; labels are
    also the groups): decoded now (in memory) or per batch (``stream``), with the same numbers."""
    has_mask_t, has_core_t = torch.tensor(has_mask, dtype=torch.bool), torch.tensor(has_core, dtype=torch.bool)
    n = decoder.size[0]
    out = {}
    pool = WorkerPool()  # one set of workers for the three streamed splits
    for i, name in enumerate(SPLIT_NAMES):
        idx = np.flatnonzero(split == i)
        common = {"normalization": normalization, "num_classes": num_classes, "num_groups": num_classes,
                  "name": f"salient-imagenet/{name}", "input_range": input_range}
        if stream:
            out[name] = SalientStreamingDataset(
                decoder, idx, torch.from_numpy(y[idx]), torch.from_numpy(y[idx]), has_mask_t[idx], has_core_t[idx],
                input_shape=(3, n, n), workers=workers, pool=pool, **common)
            continue
        x = np.empty((len(idx), 3, n, n), dtype=np.float32)
        m = np.empty((len(idx), 1, n, n), dtype=np.float32)
        core = np.empty((len(idx), 1, n, n), dtype=np.uint8)
        spur = np.empty((len(idx), 1, n, n), dtype=np.uint8)
        decoder.decode_salient(idx, x, m, core, spur)
        out[name] = SalientImageNetDataset(
            torch.from_numpy(x), torch.from_numpy(y[idx]), torch.from_numpy(m).bool().expand(-1, 3, -1, -1),
            torch.from_numpy(y[idx]), has_mask_t[idx], torch.from_numpy(core), torch.from_numpy(spur),
            has_core_t[idx], **common)
    return out
