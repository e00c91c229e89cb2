"""The checks the dataset verifiers share: option groups, the root folder, index files (missing, unreadable,
malformed), paths that escape their folder, the segmentations folder, image and mask pairs, and the splits
with their counts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ...errors import DataError, UserError
from ..csv_common import SPLIT_NAMES, option_bool, parse_options
from ..cub import choice_option, image_options, inside, threshold_option
from ..folder import _parse_normalize, _parse_size
from .images import Bad
from .report import Verification

# ------------------------------------------------------------------------------------------ options


def options_of(v: Verification, prefix: str, defaults: dict) -> tuple[str, dict]:
    """(``PREFIX:ROOT``, the loader options with ``defaults`` filled in); an unknown option is a UserError."""
    source = f"{prefix}:{v.root}"
    return source, parse_options(source, v.options, defaults)


def size_options(source: str, opts: dict) -> None:
    """Options ``size`` and ``normalize`` (three channels), checked as the ISIC and plant loaders check them."""
    _parse_size(source, opts["size"])
    _parse_normalize(source, opts["normalize"], 3)


def mask_options(source: str, opts: dict, masks, regions=None) -> str:
    """The image and mask options of CUB and Waterbirds, checked in their loaders' order: the image options,
    ``mask`` (one of ``masks``, returned), ``mask_region`` (with ``regions``), ``mask_invert``,
    ``mask_threshold``."""
    image_options(source, opts)
    mask_kind = choice_option(source, "mask", opts["mask"], masks)
    if regions is not None:
        choice_option(source, "mask_region", opts["mask_region"], regions)
    option_bool(source, "mask_invert", opts["mask_invert"])
    threshold_option(source, opts["mask_threshold"])
    return mask_kind


def needs_mask(source: str, opts: dict, mask_kind: str, needs: dict) -> None:
    """A UserError for the first option of ``needs`` (option -> the mask it needs) given with another mask."""
    for option, mask in needs.items():
        if opts[option] is not None and mask_kind != mask:
            raise UserError(f"{source}: option {option} needs mask={mask}")


# ------------------------------------------------------------------------------------------ files


def root_ok(v: Verification) -> bool:
    """Whether the dataset folder is a directory (else a missing problem)."""
    if v.root.is_dir():
        return True
    v.problem("missing", v.root, "no such directory" if not v.root.exists() else "not a directory")
    return False


def under(path: Path, root: Path) -> bool:
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
        return False


def read_index(v: Verification, path: Path, missing: str, read: Callable, kind: str = "malformed",
               recorded_if_malformed: bool = False):
    """``read(path)`` of an index file the loader reads, recorded as read; or None after recording why not:
    ``missing`` (the detail when there is no such file), a DataError of ``read`` as ``kind``, or a
    :class:`Bad`. ``recorded_if_malformed``: the file counts as read even when ``read`` fails."""
    if not os.path.lexists(path):
        v.problem("missing", path, missing)
        return None
    if recorded_if_malformed:
        v.add_file(path)
    try:
        out = read(path)
    except DataError as exc:
        v.data_error(kind, exc, path)
        return None
    except Bad as bad:
        v.problem(bad.kind, path, bad.detail)
        return None
    v.add_file(path)
    return out


def inside_or_problem(v: Verification, base_real: Path, name: str, where: str, what: str) -> Optional[Path]:
    """The real path of ``name`` under ``base_real`` (``cub.inside``), or None after a malformed problem at
    ``where`` when it resolves outside."""
    try:
        return inside(base_real, name, where, what)
    except DataError as exc:
        v.data_error("malformed", exc, where)
        return None


def segmentation_dir(v: Verification, option, wanted: bool, missing: str) -> tuple[Path, bool]:
    """(the segmentations folder: option ``segmentations=DIR``, else ROOT/segmentations; whether its masks are
    checked): ``wanted`` and present, else a missing problem (``missing`` is its detail). A folder outside the
    root becomes the extra root ``segmentations`` (its files keyed ``@segmentations/...``)."""
    seg_dir = Path(option) if option is not None else v.root / "segmentations"
    if not wanted:
        return seg_dir, False
    if not seg_dir.is_dir():
        v.problem("missing", seg_dir, missing)
        return seg_dir, False
    if not under(seg_dir, v.root):
        v.roots["segmentations"] = seg_dir
    return seg_dir, True


def compare_size(v: Verification, where: str, mask_hw, image_hw, what: str = "mask") -> None:
    """A mask size problem when both sizes are known and differ."""
    if mask_hw is not None and image_hw is not None and tuple(mask_hw) != tuple(image_hw):
        v.problem("mask size", where, f"{what} is {mask_hw[0]}x{mask_hw[1]} but its image is "
                                      f"{image_hw[0]}x{image_hw[1]}")


def check_mask(v: Verification, path, where: str, image_hw, mode: str = "L", what: str = "segmentation") -> None:
    """The mask image ``path`` checked (recorded as read) and its size compared with its image's."""
    compare_size(v, where, v.check_image(path, where, mode), image_hw, what)


# ------------------------------------------------------------------------------------------ splits


def empty_splits(v: Verification, split, where, why: dict) -> None:
    """A malformed problem at ``where`` for each split no example is in (``why[split]`` says why)."""
    for i, s in enumerate(SPLIT_NAMES):
        if not (np.asarray(split) == i).any():
            v.problem("malformed", where, f"the {s} split is empty" + (f" ({why[s]})" if s in why else ""))


def record_splits(v: Verification, keys: list, split, labels, names: list, where, why: Optional[dict] = None) -> None:
    """The examples' splits and counts per group or class (``Verification.set_splits``), after
    :func:`empty_splits`."""
    empty_splits(v, split, where, why or {})
    v.set_splits(keys, split, labels, names)
