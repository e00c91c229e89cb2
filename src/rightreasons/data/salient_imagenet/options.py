"""The options of ``salient-imagenet:IMAGES,MASKS``: the two folders of the spec, the checked image and split
options, and the classes chosen (``classes=`` wnids or indices, in label order, or the first ``num_classes``
classes with masks, or every class with masks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ...errors import DataError, UserError
from ..csv_common import option_fraction, parse_options
from ..cub import image_options, threshold_option
from .class_map import _INDEX, WordNet, is_class_index, is_wnid
from .masks import MAP_FILE

DEFAULTS = {"size": 224, "normalize": "none", "stream": False, "workers": 0, "cache": None, "classes": None,
            "num_classes": None, "mturk": None, "mask_threshold": 0.5, "val_fraction": 0.15,
            "test_fraction": 0.15, "images": None}


class Options(NamedTuple):
    """The checked options (``opts``: all of them, defaults filled in)."""

    opts: dict
    size: tuple
    norm: object
    stream: bool
    workers: int
    cache: object
    threshold: float
    val_fraction: float
    test_fraction: float


def check_options(source: str, options: dict) -> Options:
    """The options, checked in the order their errors are reported."""
    opts = parse_options(source, options, DEFAULTS)
    size, norm, stream, workers, cache = image_options(source, opts)
    if size[0] != size[1]:
        raise UserError(f"{source}: option size must be one number N (images are centre-cropped to N x N, the "
                        f"frame of the masks), got {opts['size']!r}")
    threshold = threshold_option(source, opts["mask_threshold"])
    val_f = option_fraction(source, "val_fraction", opts["val_fraction"])
    test_f = option_fraction(source, "test_fraction", opts["test_fraction"])
    if val_f + test_f >= 1:
        raise UserError(f"{source}: val_fraction + test_fraction must be < 1, got {val_f + test_f:g}")
    if opts["classes"] is not None and opts["num_classes"] is not None:
        raise UserError(f"{source}: give option classes or option num_classes, not both")
    return Options(opts, size, norm, stream, workers, cache, threshold, val_f, test_f)


def split_paths(path: str, images) -> tuple[Path, Path]:
    """(IMAGES, MASKS) from the spec's path part ``IMAGES,MASKS``, or (``images``, the whole path part)."""
    if images is not None:
        if not isinstance(images, (str, os.PathLike)) or not str(images):
            raise UserError(f"salient-imagenet:{path}: option images must be a folder path, got {images!r}")
        return Path(images), Path(path)
    parts = str(path).split(",")
    if len(parts) != 2 or not all(parts):
        raise UserError(f"salient-imagenet:{path}: expected IMAGES,MASKS (two folders, one comma between them); "
                        "if a path has a comma in it, write salient-imagenet:MASKS with option images=IMAGES")
    return Path(parts[0]), Path(parts[1])


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: {'no such directory' if not path.exists() else 'not a directory'} ({what})")
    return path


def _class_tokens(source: str, value) -> list:
    if isinstance(value, str):
        tokens = [t.strip() for t in value.split(",")]
    elif isinstance(value, (list, tuple)):
        tokens = [t.strip() if isinstance(t, str) else t for t in value]
    elif isinstance(value, int) and not isinstance(value, bool):
        tokens = [value]
    else:
        raise UserError(f"{source}: option classes must be wnids or class indices, comma-separated, got {value!r}")
    out = []
    for t in tokens:
        if isinstance(t, str) and _INDEX.fullmatch(t):
            t = int(t)
        if not (is_class_index(t) or is_wnid(t)):
            raise UserError(f"{source}: option classes: {t!r} is neither a wnid nor a class index")
        if t in out:
            raise UserError(f"{source}: option classes names {t!r} twice")
        out.append(t)
    if len(out) < 2:
        raise UserError(f"{source}: option classes must name at least two classes, got {value!r}")
    return out


def _num_classes(source: str, value) -> int:
    if isinstance(value, str) and _INDEX.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise UserError(f"{source}: option num_classes must be an integer >= 2, got {value!r}")
    return value


def select_classes(source: str, masks: Path, wordnet: WordNet, classes, num_classes) -> list[int]:
    """The class indices, in label order, chosen by ``classes`` or ``num_classes`` (see the module docstring)."""
    def has_masks(i: int) -> bool:
        return (masks / wordnet.wnid[i] / MAP_FILE).is_file()

    if classes is not None:
        chosen = []
        for t in _class_tokens(source, classes):
            i = t if isinstance(t, int) else wordnet.index.get(t)
            if i is None or i not in wordnet.wnid:
                raise DataError(f"{wordnet.path}: no class {t!r} (option classes)")
            if not has_masks(i):
                raise DataError(f"{masks / wordnet.wnid[i] / MAP_FILE}: no such file: class {t!r} (option classes, "
                                f"{wordnet.wnid[i]}, index {i}) has no Salient ImageNet masks")
            if i in chosen:
                raise UserError(f"{source}: option classes names class {i} ({wordnet.wnid[i]}) twice")
            chosen.append(i)
        return chosen
    limit = None if num_classes is None else _num_classes(source, num_classes)
    chosen = []
    for i in sorted(wordnet.wnid):
        if limit is not None and len(chosen) == limit:
            break
        if has_masks(i):
            chosen.append(i)
    if len(chosen) < (limit or 2):
        raise DataError(f"{masks}: only {len(chosen)} classes of {wordnet.path.name} have a folder with {MAP_FILE}"
                        + ("" if limit is None else f" (option num_classes={limit})"))
    return chosen
