"""Your own images: ``load_dataset("folder:PATH", **options)`` (CLI: ``--data folder:PATH``).

Layout::

    PATH/labels.csv     header: file,label[,group][,split][,mask][,boxes]   (columns in any order)
    PATH/<file>         PNG or JPEG images, paths relative to PATH (subfolders are fine)
    PATH/<mask>         grayscale mask images, the same size as their image

Every ``file`` and ``mask`` cell (and labels.csv itself) must resolve, symbolic links followed, to a
regular file inside PATH: ``../x.png``, an absolute path elsewhere or a link leading out of PATH is an
error naming the row and the column, unless option ``allow_outside=true``. Images are decoded only as
PNG, JPEG, BMP, GIF, TIFF or WebP, whatever their file name says (never a format that runs a program,
such as EPS), and at most MAX_PIXELS pixels each.

- ``label``: class names (numbered in sorted order, or as option ``classes`` lists them) or integers
  0..K-1 (option ``num_classes`` fixes K). The names are recorded in ``DataSplits.info["classes"]``.
- ``group`` (optional, default = the label): names (numbered in sorted order) or integers, for
  worst-group accuracy.
- ``split`` (optional): train / val / test. Without the column, each class is split at random
  (seeded): ``val_fraction`` 0.15 and ``test_fraction`` 0.15 of it, the rest train. With the column
  but no val rows, ``val_fraction`` of each train class becomes val.
- ``mask`` (optional): the mask image of the row; an empty cell means the example is not annotated
  (``has_mask`` False: explanation terms skip it). White (>= 128) = 1 = the region the model must
  ignore. If your masks mark the relevant region instead, pass ``mask_invert=true``. Masks must be
  near-binary (every pixel <= 25 or >= 230); grey, anti-aliased masks need an explicit
  ``mask_threshold=T`` (pixel / 255 >= T marks the pixel).
- ``boxes`` (optional): boxes instead of (or besides) a mask image, ``x,y,w,h`` in pixels of the
  original image (x, y the top-left corner; numbers may be fractional), several separated by ``;``
  (``10,12,30,20;50,4,8,8``). They are rasterised at load time: a pixel is marked when its centre lies in
  ``[x, x + w) x [y, y + h)``; the union with the row's mask image (if any) is the example's mask, and
  ``mask_invert`` applies to the union (boxes around the object that matters, then, with
  ``mask_invert=true``). A row with boxes is annotated.

Options: ``size`` (``N`` or ``"H,W"``: resize images bilinearly and masks by nearest neighbour;
without it every image must have the size of the first), ``channels`` (3 = RGB, the default, or
1 = grayscale), ``normalize`` (``none``, the default, keeps pixels in [0, 1]; ``imagenet`` uses the
ImageNet channel means and stds; ``"MEAN,STD"`` applies one mean and std to every channel; the
resulting value range is recorded as ``input_range``, the envelope over channels, so masked attacks
clamp to it), ``mask_invert``, ``mask_threshold``, ``classes``, ``num_classes``, ``val_fraction``,
``test_fraction``, ``allow_outside`` (default false: read only files inside PATH). Errors name the CSV
row or the file (``labels.csv row 7: ...``, ``img/3.png: ...``).

Folders larger than memory: ``stream=true`` returns splits of
:class:`~rightreasons.data.streaming.StreamingImageDataset`, which decode each batch's images when it is
asked for, so memory does not grow with the folder. It needs ``size`` (the images are not all read
first to check they share one). Loading checks labels.csv, labels, groups, splits and that every file
exists inside PATH; the checks of each image and mask (format, pixel count, mask values and size) run
when its batch is decoded, with the same one-line errors. ``workers=N`` (default 0, with ``stream``
only) decodes in N DataLoader processes; the batches are the same for any N. ``cache=DIR`` (with
``stream`` only; created if missing) keeps each resized image and mask as a uint8 ``.npy`` file in DIR,
named by a hash of the source files' real paths, sizes and modification times and of ``size``,
``channels`` and the mask options, and reads it back in later epochs and runs; a file that is corrupt
or of the wrong shape is rebuilt. Nothing else in DIR is touched.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DataError, UserError
from .csv_common import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    SPLIT_NAMES,
    encode_labels,
    encode_splits,
    label_and_split_options,
    one_line_errors,
    open_regular,
    option_bool,
    parse_options,
    read_csv,
    resolve_splits,
)
from .dataset import DataSplits, ExplanationDataset
from .streaming import ExampleCache, StreamingImageDataset, WorkerPool

COLUMNS = ("file", "label", "group", "split", "mask", "boxes")
#: the most boxes one labels.csv row may give
MAX_BOXES = 1000
LABELS_FILE = "labels.csv"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
NEAR_BLACK, NEAR_WHITE = 25, 230
MAX_PIXELS = 50_000_000
#: the Pillow decoders an image may be read with (file names are not trusted; EPS would run Ghostscript)
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
DEFAULTS = {"size": None, "channels": 3, "normalize": "none", "mask_invert": False, "mask_threshold": None,
            "classes": None, "num_classes": None, "val_fraction": DEFAULT_VAL_FRACTION,
            "test_fraction": DEFAULT_TEST_FRACTION, "allow_outside": False, "stream": False, "workers": 0,
            "cache": None}


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise UserError("folder datasets need Pillow: pip install Pillow") from None
    return Image


def _parse_size(source: str, value):
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("x", ",").split(",")]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise UserError(f"{source}: option size must be N or H,W (positive integers), got {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, (list, tuple)) or len(value) not in (1, 2)
            or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4096 for v in value)):
        raise UserError(f"{source}: option size must be N or H,W (integers 1..4096), got {value!r}")
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _parse_normalize(source: str, value, channels: int):
    """(mean per channel, std per channel) or None."""
    if value in (None, "none"):
        return None
    if value == "imagenet":
        if channels != 3:
            raise UserError(f"{source}: normalize=imagenet needs channels=3, got channels={channels}")
        return IMAGENET
    parts = value.split(",") if isinstance(value, str) else value
    try:
        mean, std = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise UserError(f"{source}: option normalize must be none, imagenet or MEAN,STD, got {value!r}") from None
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise UserError(f"{source}: normalize MEAN,STD needs finite numbers and STD > 0, got {value!r}")
    return (mean,) * channels, (std,) * channels


def dataset_file(root_real: Path, csv_path: Path, row: int, column: str, name: str, allow_outside: bool) -> Path:
    """The real path (symbolic links resolved) of the ``column`` cell ``name`` of a labels.csv row, refused
    unless it lies inside the dataset folder ``root_real`` (itself resolved) or ``allow_outside``. The
    check comes before any existence test, so nothing is learnt about files outside the folder."""
    real = Path(os.path.realpath(root_real / name))
    if not allow_outside and not real.is_relative_to(root_real):
        via = "" if Path(os.path.normpath(root_real / name)) == real else f" (it resolves to {real})"
        raise DataError(f"{csv_path} row {row}, column {column!r}: {name!r} is outside the dataset folder "
                        f"{root_real}{via}; pass allow_outside=true to read files outside it")
    return real


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


def _parse_workers(source: str, value) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"{source}: option workers must be a non-negative integer, got {value!r}")
    return value


def _cache_dir(source: str, value) -> Path:
    """The directory of option ``cache`` (not created here); a path that exists and is not one is an error."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise UserError(f"{source}: option cache must be a directory path, got {value!r}")
    path = Path(value)
    if os.path.lexists(path) and not path.is_dir():
        raise UserError(f"{source}: option cache: {path} exists and is not a directory")
    return path


def _make_cache_dir(source: str, path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{source}: option cache: cannot create {path} ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{source}: option cache: {path} is not writable")


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


@one_line_errors
def load_folder(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """An image folder with ``labels.csv`` (see the module docstring) as train / val / test splits."""
    root = Path(path)
    source = f"folder:{path}"
    opts = parse_options(source, options, DEFAULTS)
    size = _parse_size(source, opts["size"])
    channels = opts["channels"]
    if channels not in (1, 3) or isinstance(channels, bool):
        raise UserError(f"{source}: option channels must be 1 or 3, got {channels!r}")
    norm = _parse_normalize(source, opts["normalize"], channels)
    mask_invert = option_bool(source, "mask_invert", opts["mask_invert"])
    threshold = opts["mask_threshold"]
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0 < threshold <= 1):
        raise UserError(f"{source}: option mask_threshold must be a number in (0, 1], got {threshold!r}")
    classes, num_classes, val_f, test_f, rng = label_and_split_options(source, opts, seed, "folder")
    allow_outside = option_bool(source, "allow_outside", opts["allow_outside"])
    mask_opts = {"mask_threshold": threshold, "mask_invert": mask_invert}
    stream = option_bool(source, "stream", opts["stream"])
    workers = _parse_workers(source, opts["workers"])
    cache = _cache_dir(source, opts["cache"]) if opts["cache"] is not None else None
    for option, given in (("workers", workers != 0), ("cache", cache is not None)):
        if given and not stream:
            raise UserError(f"{source}: option {option} needs stream=true")
    if stream and size is None:
        raise UserError(f"{source}: option stream=true needs option size=N or size=H,W (a streaming folder does "
                        "not read every image first to check that they share one size)")

    if not root.is_dir():
        raise DataError(f"{root}: no such directory" if not root.exists() else f"{root}: not a directory")
    root_real = Path(os.path.realpath(root))
    csv_path = root / LABELS_FILE
    if not os.path.lexists(csv_path):
        raise DataError(f"{root}: no {LABELS_FILE} (expected a header file,label[,group][,split][,mask])")
    csv_real = Path(os.path.realpath(csv_path))
    if not allow_outside and not csv_real.is_relative_to(root_real):
        raise DataError(f"{csv_path}: is a link to {csv_real}, outside the dataset folder {root_real}; pass "
                        "allow_outside=true to read it")
    header, rows = read_csv(csv_path, "labels CSV")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise DataError(f"{csv_path}: unknown column {unknown[0]!r}; known: {', '.join(COLUMNS)}")
    for required in ("file", "label"):
        if required not in header:
            raise DataError(f"{csv_path}: missing column {required!r} (header: {', '.join(header)})")
    col = {name: [cells[header.index(name)] for _, cells in rows] if name in header else None for name in COLUMNS}
    row_numbers = [r for r, _ in rows]
    y, class_names = encode_labels(csv_path, row_numbers, col["label"], "label", classes, num_classes)
    if col["group"] is not None:
        group, group_names = encode_labels(csv_path, row_numbers, col["group"], "group")
    else:
        group, group_names = y.copy(), class_names
    split_col = encode_splits(csv_path, row_numbers, col["split"], "split") if col["split"] is not None else None

    mode = "RGB" if channels == 3 else "L"
    boxes = ([parse_boxes(cell, f"{csv_path} row {row}, column boxes") for row, cell in zip(row_numbers, col["boxes"])]
             if col["boxes"] is not None else None)
    images, masks, has_mask, seen, examples = [], [], [], {}, []
    first_hw = None
    for i, row in enumerate(row_numbers):
        name = col["file"][i]
        if not name:
            raise DataError(f"{csv_path} row {row}: missing file")
        real = dataset_file(root_real, csv_path, row, "file", name, allow_outside)
        key = os.path.normpath(root_real / name)  # the same path spelt twice (a link to a file is another file)
        if key in seen:
            raise DataError(f"{csv_path} row {row}: file {name!r} already listed in row {seen[key][0]}"
                            + ("" if seen[key][1] == name else f" (as {seen[key][1]!r})"))
        seen[key] = (row, name)
        mask_name = col["mask"][i] if col["mask"] is not None else ""
        row_boxes = boxes[i] if boxes is not None else ()
        if stream:  # only what is cheap now: the files exist (and are inside PATH); decoding checks the rest
            where = f"{root / name} (labels.csv row {row})"
            open_regular(real, "image file", where, resolved=True)[0].close()
            mask_real, mask_where = "", ""
            if mask_name:
                mask_real = dataset_file(root_real, csv_path, row, "mask", mask_name, allow_outside)
                mask_where = f"{root / mask_name} (labels.csv row {row})"
                open_regular(mask_real, "image file", mask_where, resolved=True)[0].close()
            examples.append((str(real), where, str(mask_real) if mask_name else "", mask_where))
            has_mask.append(bool(mask_name or row_boxes))
            continue
        img = read_image(real, f"{root / name} (labels.csv row {row})", mode, resolved=True)
        hw = img.shape[:2]
        if size is None and first_hw is not None and hw != first_hw[0]:
            raise DataError(f"{root / name} (labels.csv row {row}): image is {hw[0]}x{hw[1]} but {first_hw[1]} "
                            f"is {first_hw[0][0]}x{first_hw[0][1]}; pass size=H,W to resize every image")
        if first_hw is None:
            first_hw = (hw, name)
        if mask_name or row_boxes:
            mask_real = dataset_file(root_real, csv_path, row, "mask", mask_name, allow_outside) if mask_name else None
            where = f"{root / mask_name} (labels.csv row {row})" if mask_name else f"{csv_path} row {row}, column boxes"
            m = _mask(mask_real, where, hw, mask_opts, row_boxes)
        else:
            m = np.zeros(hw, dtype=bool)
        img, m = _fit(img, m, size)
        images.append(img)
        masks.append(m)
        has_mask.append(bool(mask_name or row_boxes))

    low, high = _input_range(norm)
    split, how = resolve_splits(csv_path, y, split_col, rng, val_f, test_f)
    if stream:
        decoder = FolderDecoder(examples, mode, channels, size, norm, mask_opts,
                                None if cache is None else ExampleCache(cache), boxes)
        return _streaming_splits(root, source, cache, workers, decoder, y, group, has_mask, split, (low, high),
                                 {"dataset": "folder", "path": str(root), "classes": class_names, "groups": group_names,
                                  "split": how, "seed": seed, "annotated": int(sum(has_mask)),
                                  "image_size": list(size), "channels": channels, "normalize": opts["normalize"],
                                  "input_range": [low, high], "mask_invert": mask_invert, "mask_threshold": threshold,
                                  "allow_outside": allow_outside, "stream": True, "workers": workers,
                                  "cache": None if cache is None else str(cache)})
    x = _inputs(images, channels, norm)
    mask = np.broadcast_to(np.stack(masks)[:, None], x.shape)
    out = {}
    for i, name in enumerate(SPLIT_NAMES):
        idx = np.flatnonzero(split == i)
        out[name] = ExplanationDataset(
            torch.from_numpy(np.ascontiguousarray(x[idx])), torch.from_numpy(y[idx]),
            torch.from_numpy(np.ascontiguousarray(mask[idx])), torch.from_numpy(group[idx]),
            torch.tensor([has_mask[j] for j in idx], dtype=torch.bool),
            num_classes=len(class_names), num_groups=len(group_names),
            name=f"{root.name}/{name}", input_range=(low, high))
    info = {"dataset": "folder", "path": str(root), "classes": class_names, "groups": group_names,
            "split": how, "seed": seed, "sizes": {s: len(out[s]) for s in SPLIT_NAMES},
            "annotated": int(sum(has_mask)), "image_size": list(x.shape[2:]), "channels": channels,
            "normalize": opts["normalize"], "input_range": [low, high], "mask_invert": mask_invert,
            "mask_threshold": threshold, "allow_outside": allow_outside}
    return DataSplits(out["train"], out["val"], out["test"], info)


def _streaming_splits(root: Path, source: str, cache, workers: int, decoder: FolderDecoder, y, group, has_mask,
                      split, input_range, info: dict) -> DataSplits:
    """The splits of a ``stream=true`` folder (labels in memory, images decoded per batch)."""
    if cache is not None:
        _make_cache_dir(source, cache)
    has_mask = np.array(has_mask, dtype=bool)
    out = {}
    pool = WorkerPool()  # one set of workers for the three splits
    for i, name in enumerate(SPLIT_NAMES):
        idx = np.flatnonzero(split == i)
        out[name] = StreamingImageDataset(
            decoder, idx, torch.from_numpy(y[idx]), torch.from_numpy(group[idx]), torch.from_numpy(has_mask[idx]),
            num_classes=len(info["classes"]), num_groups=len(info["groups"]), name=f"{root.name}/{name}",
            input_range=input_range, input_shape=(decoder.channels, *decoder.size), workers=workers, pool=pool)
    train = out["train"]
    present = torch.unique(train.y)
    if len(train) and len(present) < 2:  # as DataSplits checks an in-memory training split
        raise DataError(f"{train.name}: every training example has label {int(present[0])}; a classifier "
                        "needs at least two classes in the training split")
    info = {**info, "sizes": {s: len(out[s]) for s in SPLIT_NAMES}}
    return DataSplits(out["train"], out["val"], out["test"], info)
