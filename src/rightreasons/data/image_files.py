"""Decoding one image folder's files into arrays: images, masks, and the model inputs made from them.

The folder loaders read their files here: ``folder:PATH`` (:mod:`.folder`) and the published datasets'
own layouts (:mod:`.isic`, :mod:`.plant`, :mod:`.cub`, :mod:`.salient_imagenet`).

- Reading (:func:`read_image`): an image file is decoded only as PNG, JPEG, BMP, GIF, TIFF or WebP,
  whatever its file name says (never a format that runs a program, such as EPS), and at most MAX_PIXELS
  pixels each (Pillow's decompression bomb guard too); only a regular file is opened, and every failure
  is a one-line :class:`~rightreasons.errors.DataError` naming the file. 16-bit and float images are
  scaled to 8 bits.
- Resizing (``_resize``, ``_fit``): images bilinearly, masks by nearest neighbour.
- Masks (``_mask``): a mask image must have its image's size; white (>= 128) = 1 = the region the model
  must ignore; it must be near-binary (every pixel <= NEAR_BLACK or >= NEAR_WHITE) unless
  ``mask_threshold=T`` is given (pixel / 255 >= T marks the pixel). Boxes ``x,y,w,h``
  (:func:`parse_boxes`) are rasterised by :func:`box_mask` (a pixel is marked when its centre lies in the
  box) and united with the mask image; ``mask_invert`` inverts the union.
- Inputs (``_inputs``, ``_input_range``): uint8 pixels / 255 as float32 (N, C, H, W), optionally
  normalised by a mean and std per channel (IMAGENET: the ImageNet ones); ``_input_range`` is the
  envelope of the resulting values over channels.
- :class:`FolderDecoder`: the same per example, for the batches of a streaming dataset, through an
  optional on-disk :class:`~rightreasons.data.streaming.ExampleCache`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DataError, UserError
from .csv_common import one_line_errors, open_regular
from .streaming import ExampleCache

#: the most boxes one labels.csv row may give
MAX_BOXES = 1000
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
NEAR_BLACK, NEAR_WHITE = 25, 230
MAX_PIXELS = 50_000_000
#: the Pillow decoders an image may be read with (file names are not trusted; EPS would run Ghostscript)
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise UserError("folder datasets need Pillow: pip install Pillow") from None
    return Image


def read_image(path: Path, where: str, mode: str, resolved: bool = False) -> np.ndarray:
    """The image as uint8 (H, W) or (H, W, 3); any decoding failure is a one-line DataError. ``path`` must
    be a regular file (a FIFO or device is refused unopened); only the decoders in FORMATS are used, and an
    image of more than MAX_PIXELS pixels (or one Pillow deems a decompression bomb) is refused undecoded.
    ``resolved``: ``path`` is a real path (from :func:`dataset_file`); a link swapped in since is refused."""
    Image = _pil()
    fh, _ = open_regular(path, "image file", where, resolved)
    try:
        with fh, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fh, formats=FORMATS) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise DataError(f"{where}: image is {im.height}x{im.width}, more than {MAX_PIXELS} pixels")
                im.load()
                if im.mode.startswith(("I", "F")):  # 16-bit or float images: scale to 8 bits
                    arr = np.asarray(im, dtype=np.float64)
                    arr = arr / 257 if arr.max() > 255 else arr
                    im = Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8))
                out = np.asarray(im.convert(mode), dtype=np.uint8)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        reason = (str(exc).splitlines() or [""])[0]
        raise DataError(f"{where}: image too large (decompression bomb guard: {reason})") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{where}: cannot read image (cannot identify image file; expected one of "
                        f"{', '.join(FORMATS)})") from None
    except Exception as exc:  # Pillow raises many types on corrupt input; all mean "unreadable"
        reason = "truncated" if "truncated" in str(exc) else (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{where}: cannot read image ({reason})") from None
    if out.size == 0:
        raise DataError(f"{where}: image has no pixels")
    return out


def _resize(a: np.ndarray, size, nearest: bool) -> np.ndarray:
    Image = _pil()
    if a.shape[:2] == size:
        return a
    im = Image.fromarray(a)
    return np.asarray(im.resize((size[1], size[0]), Image.NEAREST if nearest else Image.BILINEAR))


def parse_boxes(cell: str, where: str) -> tuple[tuple[float, float, float, float], ...]:
    """The boxes of a ``boxes`` cell: ``x,y,w,h`` separated by ``;`` (empty: none), finite, w and h > 0."""
    boxes = []
    for part in filter(None, (p.strip() for p in cell.split(";"))):
        try:
            numbers = tuple(float(v) for v in part.split(","))
        except ValueError:
            numbers = ()
        if len(numbers) != 4 or not all(np.isfinite(numbers)):
            raise DataError(f"{where}: box {part!r} is not four numbers x,y,w,h")
        if numbers[2] <= 0 or numbers[3] <= 0:
            raise DataError(f"{where}: box {part!r} has a width or height that is not positive")
        boxes.append(numbers)
    if len(boxes) > MAX_BOXES:
        raise DataError(f"{where}: {len(boxes)} boxes, more than {MAX_BOXES}")
    return tuple(boxes)


def box_mask(boxes, image_hw, where: str) -> np.ndarray:
    """The bool (H, W) union of ``boxes``: pixel (r, c) is marked when (c + 0.5, r + 0.5) lies in
    [x, x + w) x [y, y + h). A box that marks no pixel of the image is an error."""
    h, w = image_hw
    out = np.zeros((h, w), dtype=bool)
    centres_x, centres_y = np.arange(w) + 0.5, np.arange(h) + 0.5
    for x0, y0, bw, bh in boxes:
        cols = (centres_x >= x0) & (centres_x < x0 + bw)
        rows = (centres_y >= y0) & (centres_y < y0 + bh)
        if not cols.any() or not rows.any():
            raise DataError(f"{where}: box {x0:g},{y0:g},{bw:g},{bh:g} covers no pixel of the {h}x{w} image")
        out |= rows[:, None] & cols[None, :]
    return out


def _mask(path: Optional[Path], where: str, image_hw, opts, boxes=()) -> np.ndarray:
    """The bool (H, W) mask of one example (1 = ignore): its mask image (validated against the image)
    and its boxes, united, inverted with ``mask_invert``."""
    out = np.zeros(image_hw, dtype=bool) if path is None else _mask_image(path, where, image_hw, opts)
    if boxes:
        out |= box_mask(boxes, image_hw, where)
    return ~out if opts["mask_invert"] else out


def _mask_image(path: Path, where: str, image_hw, opts) -> np.ndarray:
    """The bool (H, W) mask read from a mask image, validated against its image (not inverted)."""
    m = read_image(path, where, "L", resolved=True)
    if m.shape != image_hw:
        raise DataError(f"{where}: mask is {m.shape[0]}x{m.shape[1]} but image is {image_hw[0]}x{image_hw[1]}")
    threshold = opts["mask_threshold"]
    if threshold is None:
        grey = (m > NEAR_BLACK) & (m < NEAR_WHITE)
        if grey.any():
            r, c = np.argwhere(grey)[0]
            raise DataError(f"{where}: mask has values other than (near) 0 and 255 (e.g. {int(m[r, c])} at row {r}, "
                            f"column {c}); use mask_threshold=0.5 to binarise grey masks")
        out = m >= 128
    else:
        out = m.astype(np.float32) / 255 >= threshold
    return out


def _fit(img: np.ndarray, m: np.ndarray, size):
    """Image and mask resized to ``size`` (None: kept)."""
    if size is None:
        return img, m
    return _resize(img, size, nearest=False), _resize(m.astype(np.uint8), size, nearest=True).astype(bool)


def _inputs(images, channels: int, norm) -> np.ndarray:
    """uint8 images (H, W) or (H, W, 3) -> float32 (N, C, H, W) in [0, 1], normalised by ``norm``."""
    x = np.stack(images).astype(np.float32) / np.float32(255)
    x = x[:, None] if channels == 1 else x.transpose(0, 3, 1, 2)
    if norm is not None:
        mean = np.array(norm[0], dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.array(norm[1], dtype=np.float32).reshape(1, -1, 1, 1)
        x = (x - mean) / std
    return x


def _input_range(norm) -> tuple[float, float]:
    if norm is None:
        return 0.0, 1.0
    mean, std = np.array(norm[0], dtype=np.float32), np.array(norm[1], dtype=np.float32)
    return float((-mean / std).min()), float(((1 - mean) / std).max())


class FolderDecoder:
    """Decodes examples of a folder for :class:`StreamingImageDataset`: the same reading, checks, resizing
    and normalisation as the in-memory path, per example, through an optional :class:`ExampleCache`."""

    def __init__(self, examples, mode: str, channels: int, size, norm, mask_opts: dict,
                 cache: ExampleCache | None, boxes=None):
        #: per example (image real path, its name in messages, mask real path or "", the mask's name)
        self.examples = examples
        #: per example its boxes (labels.csv ``boxes``), or None for none anywhere
        self.boxes = boxes
        self.mode, self.channels, self.size, self.norm = mode, channels, size, norm
        self.mask_opts, self.cache = dict(mask_opts), cache
        _pil()
        from PIL import __version__ as pillow

        self.pillow = pillow  # in the cache key: another Pillow may decode or resize differently

    def _read(self, j: int):
        image, where, mask, mask_where = self.examples[j]
        img = read_image(Path(image), where, self.mode, resolved=True)
        hw = img.shape[:2]
        boxes = self.boxes[j] if self.boxes is not None else ()
        if mask or boxes:
            m = _mask(Path(mask) if mask else None, mask_where or where, hw, self.mask_opts, boxes)
        else:
            m = np.zeros(hw, dtype=bool)
        return _fit(img, m, self.size)

    def _key(self, j: int):
        """The cache key of example ``j``, or None if a file cannot be stat-ed (then decoding says why)."""
        image, _, mask, _ = self.examples[j]
        try:
            stats = [(p, os.stat(p)) for p in (image, mask) if p]
        except OSError:
            return None
        boxes = [list(b) for b in self.boxes[j]] if self.boxes is not None else []
        return ExampleCache.key([[p, st.st_size, st.st_mtime_ns] for p, st in stats], list(self.size), self.mode,
                                self.mask_opts["mask_threshold"], self.mask_opts["mask_invert"], self.pillow,
                                *([boxes] if boxes else []))

    def example(self, j: int):
        """uint8 image (H, W) or (H, W, 3) and bool mask (H, W) of example ``j``, resized."""
        key = self._key(j) if self.cache is not None else None
        if key is None:
            return self._read(j)
        (h, w), c = self.size, self.channels
        pixels = h * w * c

        def build():
            img, m = self._read(j)
            return np.concatenate([img.reshape(-1), m.reshape(-1).astype(np.uint8)])

        flat = self.cache.get(key, pixels + h * w, build)
        img = flat[:pixels].reshape((h, w) if c == 1 else (h, w, c))
        return img, flat[pixels:].reshape(h, w) != 0

    @one_line_errors
    def decode_into(self, rows: np.ndarray, x: np.ndarray, mask: np.ndarray) -> None:
        """Inputs (B, C, H, W) and masks (B, 1, H, W) of the examples ``rows`` into the float32 arrays ``x``
        and ``mask``, computed as :func:`_inputs` computes them (the same numbers), in place."""
        for k, j in enumerate(rows):
            img, m = self.example(int(j))
            x[k] = img if self.channels == 1 else img.transpose(2, 0, 1)
            mask[k, 0] = m
        np.divide(x, np.float32(255), out=x)
        if self.norm is not None:
            np.subtract(x, np.array(self.norm[0], dtype=np.float32).reshape(1, -1, 1, 1), out=x)
            np.divide(x, np.array(self.norm[1], dtype=np.float32).reshape(1, -1, 1, 1), out=x)
