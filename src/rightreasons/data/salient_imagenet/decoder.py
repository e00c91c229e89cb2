"""Pixels of a Salient ImageNet example: the image preprocessed as the masks were computed, and its masks.

Image: the shorter side resized (bilinear) to round(size * 256 / 224), then the centre size x size crop
(ImageNet's evaluation transform: 256, then 224, for ``size=224``). A mask file is square, covers that crop
and is resized to size x size. Training mask (1 = ignore): the union of the spurious features' masks, each
thresholded (pixel / 255 >= ``mask_threshold``) at the mask's resolution and resized by nearest neighbour.
Soft masks: the pixel-wise maximum of the core masks and of the spurious masks, resized bilinearly (uint8).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import DataError
from ..csv_common import one_line_errors
from ..image_files import MAX_PIXELS, FolderDecoder, _resize, read_image
from ..streaming import ExampleCache


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """ImageNet's evaluation transform: shorter side resized (bilinear) to round(size * 256 / 224), then the
    centre size x size crop (offsets rounded as torchvision rounds them)."""
    h, w = img.shape[:2]
    short = int(round(size * 256 / 224))
    oh, ow = (int(short * h / w), short) if w <= h else (short, int(short * w / h))
    if oh * ow > MAX_PIXELS:
        raise DataError(f"image is {h}x{w}: resized to {oh}x{ow} it would have more than {MAX_PIXELS} pixels")
    out = _resize(img, (oh, ow), nearest=False)
    top, left = int(round((oh - size) / 2.0)), int(round((ow - size) / 2.0))
    return out[top:top + size, left:left + size]


class SalientDecoder(FolderDecoder):
    """:class:`FolderDecoder` (RGB) for Salient ImageNet: per example the centre-cropped image, the training
    mask (union of its spurious masks, thresholded) and its core and spurious soft masks (uint8 0..255).
    ``examples[j]`` is (image real path, its name in messages, ((mask real path, its name, spurious), ...))."""

    def __init__(self, examples, size, norm, threshold: float, cache: Optional[ExampleCache]):
        super().__init__([], "RGB", 3, size, norm, {"mask_threshold": threshold, "mask_invert": False}, cache)
        self.examples = examples

    def _read_all(self, j: int):
        image, where, masks = self.examples[j]
        n = self.size[0]
        img = read_image(Path(image), where, "RGB", resolved=True)
        try:
            img = centre_crop(img, n)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        soft = {True: None, False: None}
        first = None
        for path, mask_where, spurious in masks:
            m = read_image(Path(path), mask_where, "L", resolved=True)
            if m.shape[0] != m.shape[1]:
                raise DataError(f"{mask_where}: mask is {m.shape[0]}x{m.shape[1]}; Salient ImageNet masks are square "
                                "(they cover the image's centre crop)")
            if first is not None and m.shape != first[0]:
                raise DataError(f"{mask_where}: mask is {m.shape[0]}x{m.shape[1]} but {first[1]} is "
                                f"{first[0][0]}x{first[0][1]}")
            first = first or (m.shape, mask_where)
            soft[spurious] = m if soft[spurious] is None else np.maximum(soft[spurious], m)
        zeros = np.zeros((n, n), dtype=np.uint8)
        spur = soft[True]
        train = (zeros.astype(bool) if spur is None else
                 _resize((spur.astype(np.float32) / 255 >= self.mask_opts["mask_threshold"]).astype(np.uint8),
                         (n, n), nearest=True).astype(bool))
        core_s = zeros if soft[False] is None else _resize(soft[False], (n, n), nearest=False)
        spur_s = zeros if spur is None else _resize(spur, (n, n), nearest=False)
        return img, train, core_s, spur_s

    def _key(self, j: int):
        image, _, masks = self.examples[j]
        try:
            st = os.stat(image)
            parts = [[p, os.stat(p).st_size, os.stat(p).st_mtime_ns, s] for p, _, s in masks]
        except OSError:
            return None
        return ExampleCache.key([image, st.st_size, st.st_mtime_ns], parts, list(self.size), "salient-imagenet",
                                self.mask_opts["mask_threshold"], self.pillow)

    def full(self, j: int):
        """uint8 image (n, n, 3), bool training mask, uint8 core and spurious soft masks (n, n) of example ``j``."""
        key = self._key(j) if self.cache is not None else None
        if key is None:
            return self._read_all(j)
        n = self.size[0]
        pixels, plane = n * n * 3, n * n

        def build():
            img, m, c, s = self._read_all(j)
            return np.concatenate([img.reshape(-1), m.reshape(-1).astype(np.uint8), c.reshape(-1), s.reshape(-1)])

        flat = self.cache.get(key, pixels + 3 * plane, build)
        planes = [flat[pixels + k * plane:pixels + (k + 1) * plane].reshape(n, n) for k in range(3)]
        return flat[:pixels].reshape(n, n, 3), planes[0] != 0, planes[1], planes[2]

    def example(self, j: int):
        img, m, _, _ = self.full(j)
        return img, m

    @one_line_errors
    def decode_salient(self, rows: np.ndarray, x: np.ndarray, mask: np.ndarray, core: np.ndarray,
                       spurious: np.ndarray) -> None:
        """Inputs (B, 3, n, n) and masks (B, 1, n, n) as :meth:`decode_into` writes them, and the core and
        spurious soft masks (B, 1, n, n, uint8 or float32 0..255), in place."""
        for k, j in enumerate(rows):
            img, m, c, s = self.full(int(j))
            x[k] = img.transpose(2, 0, 1)
            mask[k, 0], core[k, 0], spurious[k, 0] = m, c, s
        np.divide(x, np.float32(255), out=x)
        if self.norm is not None:
            np.subtract(x, np.array(self.norm[0], dtype=np.float32).reshape(1, -1, 1, 1), out=x)
            np.divide(x, np.array(self.norm[1], dtype=np.float32).reshape(1, -1, 1, 1), out=x)
