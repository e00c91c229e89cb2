"""Your own images: ``load_dataset("folder:PATH", **options)`` (CLI: ``--data folder:PATH``).

Layout::

    PATH/labels.csv     header: file,label[,group][,split][,mask]   (columns in any order)
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

Options: ``size`` (``N`` or ``"H,W"``: resize images bilinearly and masks by nearest neighbour;
without it every image must have the size of the first), ``channels`` (3 = RGB, the default, or
1 = grayscale), ``normalize`` (``none``, the default, keeps pixels in [0, 1]; ``imagenet`` uses the
ImageNet channel means and stds; ``"MEAN,STD"`` applies one mean and std to every channel; the
resulting value range is recorded as ``input_range``, the envelope over channels, so masked attacks
clamp to it), ``mask_invert``, ``mask_threshold``, ``classes``, ``num_classes``, ``val_fraction``,
``test_fraction``, ``allow_outside`` (default false: read only files inside PATH). Errors name the CSV
row or the file (``labels.csv row 7: ...``, ``img/3.png: ...``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

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

COLUMNS = ("file", "label", "group", "split", "mask")
LABELS_FILE = "labels.csv"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
NEAR_BLACK, NEAR_WHITE = 25, 230
MAX_PIXELS = 50_000_000
#: the Pillow decoders an image may be read with (file names are not trusted; EPS would run Ghostscript)
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
DEFAULTS = {"size": None, "channels": 3, "normalize": "none", "mask_invert": False, "mask_threshold": None,
            "classes": None, "num_classes": None, "val_fraction": DEFAULT_VAL_FRACTION,
            "test_fraction": DEFAULT_TEST_FRACTION, "allow_outside": False}


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


def _mask(path: Path, where: str, image_hw, opts) -> np.ndarray:
    """The bool (H, W) mask of one example (1 = ignore), validated against its image."""
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
    return ~out if opts["mask_invert"] else out


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
    images, masks, has_mask, seen = [], [], [], {}
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
        img = read_image(real, f"{root / name} (labels.csv row {row})", mode, resolved=True)
        hw = img.shape[:2]
        if size is None and first_hw is not None and hw != first_hw[0]:
            raise DataError(f"{root / name} (labels.csv row {row}): image is {hw[0]}x{hw[1]} but {first_hw[1]} "
                            f"is {first_hw[0][0]}x{first_hw[0][1]}; pass size=H,W to resize every image")
        if first_hw is None:
            first_hw = (hw, name)
        mask_name = col["mask"][i] if col["mask"] is not None else ""
        if mask_name:
            mask_real = dataset_file(root_real, csv_path, row, "mask", mask_name, allow_outside)
            m = _mask(mask_real, f"{root / mask_name} (labels.csv row {row})", hw, mask_opts)
        else:
            m = np.zeros(hw, dtype=bool)
        if size is not None:
            img = _resize(img, size, nearest=False)
            m = _resize(m.astype(np.uint8), size, nearest=True).astype(bool)
        images.append(img)
        masks.append(m)
        has_mask.append(bool(mask_name))

    x = np.stack(images).astype(np.float32) / np.float32(255)
    x = x[:, None] if channels == 1 else x.transpose(0, 3, 1, 2)
    low, high = 0.0, 1.0
    if norm is not None:
        mean = np.array(norm[0], dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.array(norm[1], dtype=np.float32).reshape(1, -1, 1, 1)
        x = (x - mean) / std
        low, high = float((-mean / std).min()), float(((1 - mean) / std).max())
    mask = np.broadcast_to(np.stack(masks)[:, None], x.shape)
    split, how = resolve_splits(csv_path, y, split_col, rng, val_f, test_f)
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
