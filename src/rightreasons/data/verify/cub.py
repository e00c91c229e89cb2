"""CUB-200-2011 (its text files, images and the masks the ``mask`` option reads), checked as ``data/cub.py``
reads it."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ...errors import DataError, UserError
from .. import cub
from ..csv_common import option_fraction, split_generator, stratified_split
from .report import Verification
from .run import register_verifier
from .shared import (
    check_mask,
    inside_or_problem,
    mask_options,
    needs_mask,
    options_of,
    read_index,
    record_splits,
    root_ok,
    segmentation_dir,
)

BOXES_FORMAT = "<image id> <x> <y> <width> <height>"
PART_LOCS_FORMAT = "<image id> <part id> <x> <y> <visible>"


@register_verifier("cub")
def verify_cub(v: Verification) -> None:
    """CUB-200-2011 (its text files, images and the masks the ``mask`` option reads), as ``data/cub.py``
    reads it."""
    source, opts = options_of(v, "cub", cub.DEFAULTS)
    mask_kind = mask_options(source, opts, cub.MASKS, cub.REGIONS)
    needs_mask(source, opts, mask_kind, {"parts": "parts", "part_size": "parts", "segmentations": "segmentation"})
    part_size = opts["part_size"]
    if part_size is not None and (isinstance(part_size, bool) or not isinstance(part_size, (int, float))
                                  or not math.isfinite(part_size) or part_size <= 0):
        raise UserError(f"{source}: option part_size must be a positive number of pixels, got {part_size!r}")
    val_f = option_fraction(source, "val_fraction", opts["val_fraction"])
    classes = opts["classes"]
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int)
                                or not 2 <= classes <= cub.NUM_CLASSES):
        raise UserError(f"{source}: option classes must be an integer 2..{cub.NUM_CLASSES}, got {classes!r}")
    v.settings = {"mask": mask_kind, "val_fraction": val_f, "classes": classes, "seed": v.seed}
    v.count_by = "class"
    if not root_ok(v):
        return

    images_txt = v.root / "images.txt"
    paths, lines_of = _per_image(v, images_txt, "<image id> <path>", lambda n, rel: rel, rest=True)
    images = {image: (lines_of[image], rel) for image, rel in paths.items()}
    labels_txt, split_txt = v.root / "image_class_labels.txt", v.root / "train_test_split.txt"
    label_of, _ = _per_image(v, labels_txt, "<image id> <class id>", lambda n, c: cub._class(labels_txt, n, c),
                             images)
    train_of, _ = _per_image(v, split_txt, "<image id> <is train>",
                             lambda n, c: cub._flag(split_txt, n, c, "is-train value"), images)
    for path, table in ((labels_txt, label_of), (split_txt, train_of)):
        if any(Path(p) == path for p in v.files.values()):
            for image, (n, _) in images.items():
                if image not in table:
                    v.problem("malformed", path, f"no line for image id {image} (images.txt line {n})")
    ids = [i for i in images if i in label_of and i in train_of and (classes is None or label_of[i] <= classes)]

    _mask_files(v, source, mask_kind, opts["parts"], images, ids)
    seg_dir, check_segs = segmentation_dir(v, opts["segmentations"], mask_kind == "segmentation",
                                           "no segmentations directory (CUB's segmentations.tgz, extracted); pass "
                                           "segmentations=DIR, or mask=box, mask=parts or mask=none")
    keys = _images(v, images, ids, seg_dir, check_segs)
    if not ids:
        v.set_splits([], [], [], [])
        return
    num_classes = max(label_of[i] for i in ids)
    names = [f"{c:03d}" for c in range(1, num_classes + 1)]
    for image in reversed(ids):
        rel = images[image][1]
        if "/" in rel:
            names[label_of[image] - 1] = rel.split("/")[0]
    y = np.array([label_of[i] - 1 for i in ids], dtype=np.int64)
    is_train = np.array([train_of[i] for i in ids], dtype=bool)
    split = stratified_split(y, split_generator(v.seed, "cub"), val_f, 0.0, np.where(is_train, -1, 2))
    record_splits(v, keys, split, y, names, v.root, {
        "val": f"val_fraction={val_f:g} of each class's training images rounds to none",
        "train": "train_test_split.txt has no train images", "test": "train_test_split.txt has no test images"})


def _lines(v: Verification, path: Path, fmt: str) -> list:
    """(line number, text) of the non-blank lines of a CUB text file, or [] after recording why not."""
    return read_index(v, path, f"no such file (lines '{fmt}' expected)", lambda p: cub._lines(p, fmt)) or []


def _per_image(v: Verification, path: Path, fmt: str, parse: Callable, known: Optional[dict] = None,
               rest: bool = False) -> tuple[dict, dict]:
    """(image id -> parse(line number, second field), image id -> line number) of a text file of lines
    ``<image id> <value>``: a malformed line, an image id not in ``known`` or already listed is recorded."""
    out: dict = {}
    where: dict = {}
    for n, line in _lines(v, path, fmt):
        try:
            cells = cub._fields(path, n, line, fmt, 2, rest=rest)
            image = cub._int(path, n, cells[0], "image id")
            value = parse(n, cells[1])
        except DataError as exc:
            v.data_error("malformed", exc, path)
            continue
        if known is not None and image not in known:
            v.problem("malformed", f"{path} line {n}", f"image id {image} is not in images.txt")
        elif image in out:
            v.problem("malformed", f"{path} line {n}", f"image id {image} already on line {where[image]}")
        else:
            out[image], where[image] = value, n
    return out, where


def _mask_files(v: Verification, source: str, mask_kind: str, parts, images: dict, ids: list) -> None:
    """The text files of ``mask=box`` or ``mask=parts``, parsed by the loader's functions."""
    if mask_kind == "box":
        boxes_txt = v.root / "bounding_boxes.txt"
        if _lines(v, boxes_txt, BOXES_FORMAT):
            try:
                boxes = cub._per_image(boxes_txt, images, BOXES_FORMAT, 5, lambda n, c: cub._box(boxes_txt, n, c))
                cub._require_all(boxes_txt, boxes, ids, images)
            except DataError as exc:
                v.data_error("malformed", exc, boxes_txt)
    elif mask_kind == "parts":
        parts_txt, locs_txt = v.root / "parts" / "parts.txt", v.root / "parts" / "part_locs.txt"
        if _lines(v, parts_txt, "<part id> <name>") and _lines(v, locs_txt, PART_LOCS_FORMAT):
            try:
                table = cub._parts(v.root)
                cub._part_locations(v.root, images, table, cub._chosen_parts(v.root, source, table, parts))
            except DataError as exc:
                v.data_error("malformed", exc, parts_txt)


def _images(v: Verification, images: dict, ids: list, seg_dir: Path, check_segs: bool) -> list:
    """The image keys of ``ids``, each image checked (and its segmentation, with ``check_segs``)."""
    images_txt, images_dir = v.root / "images.txt", v.root / "images"
    check_images = images_dir.is_dir()
    if not check_images:
        v.problem("missing", images_dir, "no such directory (the CUB images)")
    images_real, seg_real = Path(os.path.realpath(images_dir)), Path(os.path.realpath(seg_dir))
    keys = []
    for image in ids:
        n, rel = images[image]
        keys.append(v.key(images_dir / rel))
        if not check_images:
            continue
        at = f"{images_txt} line {n}"
        if inside_or_problem(v, images_real, rel, at, "image path") is None:
            continue
        hw = v.check_image(images_dir / rel, f"{images_dir / rel} (images.txt line {n})")
        if check_segs:
            seg_rel = str(Path(rel).with_suffix(".png"))
            if inside_or_problem(v, seg_real, seg_rel, at, "segmentation path") is not None:
                check_mask(v, seg_dir / seg_rel, f"{seg_dir / seg_rel} (segmentation of images.txt line {n})", hw)
    return keys
