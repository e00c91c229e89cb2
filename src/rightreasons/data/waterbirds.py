"""Waterbirds (Sagawa et al., 2020, "Distributionally Robust Neural Networks"): CUB birds pasted on Places
backgrounds, the background a shortcut. ``load_dataset("waterbirds:PATH", **options)``.

Layout (PATH is the extracted folder, e.g. ``waterbird_complete95_forest2water2``)::

    PATH/metadata.csv      img_id,img_filename,y,split,place,place_filename   (other columns are ignored)
    PATH/<img_filename>    the images, e.g. 001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg

``y``: 0 landbird, 1 waterbird (the labels; ``info["classes"]``). ``split``: 0 train, 1 val, 2 test.
``place``: 0 land, 1 water. Groups: ``2 * y + place``, numbered as Sagawa et al. number them:
0 ``landbird/land``, 1 ``landbird/water``, 2 ``waterbird/land``, 3 ``waterbird/water`` (1 and 2, the bird on
the other kind of background, are the small groups in training).

Masks (1 = ignore): the background, the complement of the bird's CUB segmentation (each Waterbirds image
has its CUB image's size and the bird where it was). ``segmentations=DIR`` (default PATH/segmentations) is
CUB's ``segmentations`` folder; an image's segmentation is the ``.png`` file with the image's file stem
anywhere under DIR. A pixel is the bird where pixel / 255 >= ``mask_threshold`` (default 0.5), thresholded
at the image's resolution and resized by nearest neighbour; ``mask_invert=true`` makes the bird the mask.
Without that directory loading is an error naming it, unless ``mask=none`` (no masks: every example
un-annotated), so that losing every annotation is a choice, never a warning scrolled past. An image whose
stem has no segmentation (or two) is an error naming it and its row.

Options: ``size`` (default 224), ``normalize``, ``stream``, ``workers``, ``cache`` (as in ``folder:PATH``),
``mask`` (``segmentation`` or ``none``), ``mask_invert``, ``mask_threshold``, ``segmentations``. Image paths
must resolve inside PATH. Errors name the file, row and column (``metadata.csv row 7, column 'split': ...``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError, UserError
from .csv_common import SPLIT_NAMES, one_line_errors, option_bool, parse_options, read_csv
from .cub import RegionDecoder, check_exists, choice_option, image_options, image_splits, inside, threshold_option
from .dataset import DataSplits
from .registry import register_path_dataset
from .streaming import ExampleCache

CLASSES = ["landbird", "waterbird"]
GROUPS = ["landbird/land", "landbird/water", "waterbird/land", "waterbird/water"]
REQUIRED = ("img_filename", "y", "split", "place")
VALUES = {"y": ("0 (landbird)", "1 (waterbird)"), "split": ("0 (train)", "1 (val)", "2 (test)"),
          "place": ("0 (land)", "1 (water)")}
DEFAULTS = {"size": 224, "normalize": "none", "stream": False, "workers": 0, "cache": None,
            "mask": "segmentation", "mask_invert": False, "mask_threshold": 0.5, "segmentations": None}


def _codes(path: Path, rows, cells, column: str) -> np.ndarray:
    allowed = VALUES[column]
    out = []
    for row, cell in zip(rows, cells):
        if cell not in [str(i) for i in range(len(allowed))]:
            raise DataError(f"{path} row {row}, column {column!r}: {cell[:40]!r} is not {', '.join(allowed[:-1])} "
                            f"or {allowed[-1]}")
        out.append(int(cell))
    return np.array(out, dtype=np.int64)


def _segmentation_index(seg_dir: Path) -> dict[str, list[str]]:
    """file stem -> the .png files of that stem under ``seg_dir`` (its real path)."""
    index: dict[str, list[str]] = {}
    for folder, dirs, files in os.walk(seg_dir):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".png"):
                index.setdefault(name[:-4], []).append(os.path.relpath(os.path.join(folder, name), seg_dir))
    return index


@register_path_dataset("waterbirds", default_model="resnet18", default_epochs=30, default_batch_size=64)
@one_line_errors
def load_waterbirds(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """Waterbirds with background masks (see the module docstring); ``seed`` is recorded (the splits are
    the metadata's)."""
    root = Path(path)
    source = f"waterbirds:{path}"
    opts = parse_options(source, options, DEFAULTS)
    size, norm, stream, workers, cache = image_options(source, opts)
    mask_kind = choice_option(source, "mask", opts["mask"], ("segmentation", "none"))
    invert = option_bool(source, "mask_invert", opts["mask_invert"])
    threshold = threshold_option(source, opts["mask_threshold"])
    if opts["segmentations"] is not None and mask_kind != "segmentation":
        raise UserError(f"{source}: option segmentations needs mask=segmentation")

    if not root.is_dir():
        raise DataError(f"{root}: no such directory" if not root.exists() else f"{root}: not a directory")
    csv_path = root / "metadata.csv"
    if not os.path.lexists(csv_path):
        raise DataError(f"{csv_path}: no such file (expected a header {','.join(REQUIRED)}, as Waterbirds has)")
    header, rows = read_csv(csv_path, "Waterbirds metadata CSV")
    for column in REQUIRED:
        if column not in header:
            raise DataError(f"{csv_path}: missing column {column!r} (header: {', '.join(header)})")
    row_numbers = [r for r, _ in rows]
    col = {name: [cells[header.index(name)] for _, cells in rows] for name in header}
    y, split, place = (_codes(csv_path, row_numbers, col[c], c) for c in ("y", "split", "place"))
    ids = None
    if "img_id" in header:
        ids = []
        for row, cell in zip(row_numbers, col["img_id"]):
            if not cell.isascii() or not cell.isdigit() or len(cell) > 9:
                raise DataError(f"{csv_path} row {row}, column 'img_id': {cell[:40]!r} is not a non-negative integer")
            ids.append(int(cell))

    seg_dir = Path(opts["segmentations"]) if opts["segmentations"] is not None else root / "segmentations"
    index = None
    if mask_kind == "segmentation":
        if not seg_dir.is_dir():
            raise DataError(f"{seg_dir}: no segmentations directory (CUB's segmentations folder); pass "
                            "segmentations=DIR, or mask=none to load Waterbirds without masks")
        seg_real = Path(os.path.realpath(seg_dir))
        index = _segmentation_index(seg_real)
    root_real = Path(os.path.realpath(root))
    examples, seen = [], {}
    for row, name in zip(row_numbers, col["img_filename"]):
        at = f"{csv_path} row {row}, column 'img_filename'"
        if not name:
            raise DataError(f"{at}: empty file name")
        real = inside(root_real, name, at, "image path")
        if real in seen:
            raise DataError(f"{at}: {name!r} already listed in row {seen[real]}")
        seen[real] = row
        where = f"{root / name} (metadata.csv row {row})"
        mask_real, mask_where = "", ""
        if index is not None:
            stem = Path(name).stem
            found = index.get(stem, [])
            if len(found) != 1:
                what = "no" if not found else f"{len(found)} ({', '.join(found[:2])})"
                raise DataError(f"{where}: {what} segmentation {stem}.png under {seg_dir}")
            mask_where = f"{seg_dir / found[0]} (segmentation of metadata.csv row {row})"
            mask_real = str(inside(seg_real, found[0], mask_where, "segmentation"))
        if stream:
            check_exists(str(real), where)
        examples.append((str(real), where, mask_real, mask_where))
    for i, name in enumerate(SPLIT_NAMES):
        if not (split == i).any():
            raise DataError(f"{csv_path}: the {name} split is empty (no row has split {i})")

    flip = not invert  # the segmentation marks the bird; the mask is the background
    decoder = RegionDecoder(examples, size, norm, {"mask_threshold": threshold, "mask_invert": flip},
                            None if cache is None else ExampleCache(cache))
    has_mask = np.full(len(examples), mask_kind == "segmentation")
    info = {"dataset": "waterbirds", "path": str(root), "classes": list(CLASSES), "groups": list(GROUPS),
            "split": "metadata.csv split column (0 train, 1 val, 2 test)", "seed": seed, "image_size": list(size),
            "channels": 3, "normalize": opts["normalize"], "mask": mask_kind, "mask_invert": invert,
            "mask_threshold": threshold if mask_kind == "segmentation" else None,
            "segmentations": str(seg_dir) if mask_kind == "segmentation" else None,
            "image_ids": None if ids is None else
            {s: np.array(ids)[split == i].tolist() for i, s in enumerate(SPLIT_NAMES)}}
    return image_splits(root, source, decoder, y, 2 * y + place, has_mask, split, norm, info, stream, workers,
                        cache)
