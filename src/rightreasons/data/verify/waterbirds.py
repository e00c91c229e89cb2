"""Waterbirds (metadata.csv, the images, CUB's segmentations), checked as ``data/waterbirds.py`` reads it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import DataError
from .. import waterbirds as wb
from ..csv_common import SPLIT_NAMES, read_csv
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


@register_verifier("waterbirds")
def verify_waterbirds(v: Verification) -> None:
    """Waterbirds (metadata.csv, the images, CUB's segmentations), as ``data/waterbirds.py`` reads it."""
    source, opts = options_of(v, "waterbirds", wb.DEFAULTS)
    mask_kind = mask_options(source, opts, ("segmentation", "none"))
    needs_mask(source, opts, mask_kind, {"segmentations": "segmentation"})
    v.settings = {"mask": mask_kind}
    if not root_ok(v):
        return
    csv_path = v.root / "metadata.csv"
    table = read_index(v, csv_path, f"no such file (a header {','.join(wb.REQUIRED)} expected)",
                       lambda path: read_csv(path, "Waterbirds metadata CSV"))
    if table is None:
        return
    header, rows = table
    missing = [c for c in wb.REQUIRED if c not in header]
    if missing:
        v.problem("malformed", csv_path, f"missing column(s) {', '.join(map(repr, missing))} (header: "
                                         f"{', '.join(header)})")
        return
    seg_dir, check_segs = segmentation_dir(v, opts["segmentations"], mask_kind == "segmentation",
                                           "no segmentations directory (CUB's segmentations folder); pass "
                                           "segmentations=DIR, or mask=none")
    seg_real = Path(os.path.realpath(seg_dir)) if check_segs else None
    index = wb._segmentation_index(seg_real) if check_segs else None
    root_real = Path(os.path.realpath(v.root))
    keys, split, groups, seen = [], [], [], {}
    for row, cells in rows:
        cell = {name: cells[header.index(name)] for name in wb.REQUIRED}
        codes = {}
        for column in ("y", "split", "place"):
            try:
                codes[column] = int(wb._codes(csv_path, [row], [cell[column]], column)[0])
            except DataError as exc:
                v.data_error("malformed", exc, csv_path)
        if "img_id" in header:
            raw = cells[header.index("img_id")]
            if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
                v.problem("malformed", f"{csv_path} row {row}, column 'img_id'", f"{raw[:40]!r} is not a "
                                                                                 "non-negative integer")
        at = f"{csv_path} row {row}, column 'img_filename'"
        name = cell["img_filename"]
        if not name:
            v.problem("malformed", at, "empty file name")
            continue
        real = inside_or_problem(v, root_real, name, at, "image path")
        if real is None:
            continue
        if real in seen:
            v.problem("malformed", at, f"{name!r} already listed in row {seen[real]}")
            continue
        seen[real] = row
        where = f"{v.root / name} (metadata.csv row {row})"
        hw = v.check_image(v.root / name, where)
        if index is not None:
            _segmentation(v, index, seg_dir, seg_real, name, row, where, hw)
        if len(codes) == 3:
            keys.append(v.key(v.root / name))
            split.append(codes["split"])
            groups.append(2 * codes["y"] + codes["place"])
    record_splits(v, keys, np.array(split, dtype=np.int64), np.array(groups, dtype=np.int64), wb.GROUPS, csv_path,
                  {s: f"no row has split {i}" for i, s in enumerate(SPLIT_NAMES)})


def _segmentation(v: Verification, index: dict, seg_dir: Path, seg_real: Path, name: str, row: int, where: str,
                  hw: Optional[tuple]) -> None:
    """The segmentation of the image ``name`` (metadata.csv row ``row``): found once under ``seg_dir``, inside
    it, of its image's size."""
    stem = Path(name).stem
    found = index.get(stem, [])
    if not found:
        v.problem("missing", seg_dir / Path(name).with_suffix(".png"),
                  f"no segmentation {stem}.png under {seg_dir} (for {where})")
    elif len(found) > 1:
        v.problem("malformed", where, f"{len(found)} segmentations {stem}.png under {seg_dir} "
                                      f"({', '.join(found[:2])})")
    else:
        mask_where = f"{seg_dir / found[0]} (segmentation of metadata.csv row {row})"
        if inside_or_problem(v, seg_real, found[0], mask_where, "segmentation") is not None:
            check_mask(v, seg_dir / found[0], mask_where, hw)
