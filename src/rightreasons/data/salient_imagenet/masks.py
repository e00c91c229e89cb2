"""The soft masks of one class: ``MASKS/<wnid>/image_names_map.csv`` against ``<wnid>/feature_<f>/``.

The map is read by column names, in one of two forms:

- one column per feature (the published form): every header cell is a feature index (``59`` or
  ``feature_59``), each cell below it the name of an image with a mask of that feature (``n01440764_10026``,
  ``.JPEG`` optional); the mask is ``feature_<f>/<name>`` with extension .JPEG, .jpeg, .jpg or .png.
  Empty cells are skipped (columns may differ in length).
- two columns, in either order: ``mask`` (the mask file relative to the class folder,
  ``feature_<f>/<file>``) and ``image`` (the image's name).

A mask file under ``feature_<f>/`` that no row names, a row whose mask is missing, and an image or mask named
twice are errors naming the file and row.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from ...errors import DataError
from ..csv_common import read_csv
from ..cub import _show
from .images import IMAGE_SUFFIX, IMAGE_SUFFIXES

MAP_FILE = "image_names_map.csv"
MASK_COLUMNS, IMAGE_COLUMNS = ("mask", "mask_name", "mask_file"), ("image", "image_name", "imagenet_name")
MASK_SUFFIXES = IMAGE_SUFFIXES
_FEATURE = re.compile(r"(?:feature_)?([0-9]{1,9})")
_FEATURE_DIR = re.compile(r"feature_([0-9]{1,9})")
_FEATURE_FILE = re.compile(r"feature_([0-9]{1,9})/([^/\\]+)")


class Entry(NamedTuple):
    """One mask of image_names_map.csv: its row (``FILE row N``), cell (the row and column), feature, image
    name and mask file (real path)."""

    row: str
    where: str
    feature: int
    image: str
    mask: str


def _plain_name(where: str, what: str, name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or not name.isprintable():
        raise DataError(f"{where}: {what} {_show(name)} is not a plain file name")
    return name


def _image_stem(name: str) -> str:
    return name[: -len(IMAGE_SUFFIX)] if name.lower().endswith(IMAGE_SUFFIX.lower()) else name


def _feature_files(class_dir: Path) -> dict:
    """feature index -> {file name: real path} of the mask files under ``class_dir/feature_<f>/``."""
    out = {}
    try:
        entries = list(os.scandir(class_dir))
    except OSError as exc:
        raise DataError(f"{class_dir}: cannot list the class folder ({exc.strerror or exc})") from None
    for entry in entries:
        match = _FEATURE_DIR.fullmatch(entry.name)
        if not match or not entry.is_dir():
            continue
        try:
            names = sorted(e.name for e in os.scandir(entry.path)
                           if not e.name.startswith(".") and e.name.lower().endswith(MASK_SUFFIXES))
        except OSError as exc:
            raise DataError(f"{entry.path}: cannot list the feature folder ({exc.strerror or exc})") from None
        out[int(match.group(1))] = {n: os.path.realpath(os.path.join(entry.path, n)) for n in names}
    return out


def read_map(class_dir: Path) -> list[Entry]:
    """The masks of one class: image_names_map.csv against the feature folders (see the module docstring)."""
    path = class_dir / MAP_FILE
    header, rows = read_csv(path, "image names map")
    files = _feature_files(class_dir)
    used: dict = {}
    entries: list[Entry] = []
    seen: dict = {}

    def add(row, where, feature, image, mask_name):
        real = files.get(feature, {}).get(mask_name)
        if real is None:
            raise DataError(f"{where}: no mask file {class_dir / f'feature_{feature}' / mask_name}")
        if (feature, image) in seen:
            raise DataError(f"{where}: image {image!r} already has a mask of feature {feature} "
                            f"({seen[feature, image]})")
        if (feature, mask_name) in used:
            raise DataError(f"{where}: mask file feature_{feature}/{mask_name} already named "
                            f"({used[feature, mask_name]})")
        seen[feature, image] = used[feature, mask_name] = where
        entries.append(Entry(row, where, feature, image, real))

    features = [_FEATURE.fullmatch(name) for name in header]
    if all(features):
        columns = [int(m.group(1)) for m in features]
        if len(set(columns)) != len(columns):
            raise DataError(f"{path}: a feature has two columns ({', '.join(header)})")
        for row, cells in rows:
            for name, feature, cell in zip(header, columns, cells):
                if not cell:
                    continue
                where = f"{path} row {row}, column {name!r}"
                image = _image_stem(_plain_name(where, "image name", cell))
                stems = [n for n in files.get(feature, {}) if os.path.splitext(n)[0] == image]
                if len(stems) > 1:
                    raise DataError(f"{where}: two mask files for image {image!r}: "
                                    f"{', '.join(f'feature_{feature}/{n}' for n in stems)}")
                add(f"{path} row {row}", where, feature, image, stems[0] if stems else f"{image}{IMAGE_SUFFIX}")
    else:
        mask_col = [c for c in header if c in MASK_COLUMNS]
        image_col = [c for c in header if c in IMAGE_COLUMNS]
        if len(header) != 2 or len(mask_col) != 1 or len(image_col) != 1:
            raise DataError(f"{path}: expected one column per feature (59,686,... or feature_59,...) or the two "
                            f"columns mask and image (in either order); header: {', '.join(header)[:200]}")
        m_at, i_at = header.index(mask_col[0]), header.index(image_col[0])
        for row, cells in rows:
            where = f"{path} row {row}"
            match = _FEATURE_FILE.fullmatch(cells[m_at])
            if not match:
                raise DataError(f"{where}, column {mask_col[0]!r}: {_show(cells[m_at])} is not feature_<f>/<file>")
            image = _image_stem(_plain_name(f"{where}, column {image_col[0]!r}", "image name", cells[i_at]))
            add(where, where, int(match.group(1)), image, _plain_name(where, "mask file", match.group(2)))
    for feature, names in sorted(files.items()):
        for name in names:
            if (feature, name) not in used:
                raise DataError(f"{class_dir / f'feature_{feature}' / name}: mask file maps to no image (no row of "
                                f"{path} names it)")
    return entries
