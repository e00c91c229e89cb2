"""Your own images: ``load_dataset("folder:PATH", **options)`` (CLI: ``--data folder:PATH``).

Layout::

    PATH/labels.csv     header: file,label[,group][,split][,mask][,boxes]   (columns in any order)
    PATH/<file>         PNG or JPEG images, paths relative to PATH (subfolders are fine)
    PATH/<mask>         grayscale mask images, the same size as their image

Every ``file`` and ``mask`` cell (and labels.csv itself) must resolve, symbolic links followed, to a
regular file inside PATH: ``../x.png``, an absolute path elsewhere or a link leading out of PATH is an
error naming the row and the column, unless option ``allow_outside=true``. Images and masks are decoded
as :mod:`.image_files` describes: only as PNG, JPEG, BMP, GIF, TIFF or WebP, whatever their file name
says, and at most MAX_PIXELS pixels each.

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
from .image_files import IMAGENET, FolderDecoder, _fit, _input_range, _inputs, _mask, parse_boxes, read_image
from .streaming import ExampleCache, StreamingImageDataset, WorkerPool

COLUMNS = ("file", "label", "group", "split", "mask", "boxes")
LABELS_FILE = "labels.csv"
DEFAULTS = {"size": None, "channels": 3, "normalize": "none", "mask_invert": False, "mask_threshold": None,
            "classes": None, "num_classes": None, "val_fraction": DEFAULT_VAL_FRACTION,
            "test_fraction": DEFAULT_TEST_FRACTION, "allow_outside": False, "stream": False, "workers": 0,
            "cache": None}


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
