"""CUB-200-2011 (Wah et al., 2011) from its downloaded files: ``load_dataset("cub:PATH", **options)``.

Layout (PATH is the extracted ``CUB_200_2011`` folder)::

    PATH/images.txt                <image id> <path under images/>
    PATH/image_class_labels.txt    <image id> <class id 1..200>
    PATH/train_test_split.txt      <image id> <1 = train, 0 = test>
    PATH/images/<class folder>/<file>.jpg
    PATH/bounding_boxes.txt        <image id> <x> <y> <width> <height>      (mask=box)
    PATH/parts/parts.txt           <part id> <name>                         (mask=parts)
    PATH/parts/part_locs.txt       <image id> <part id> <x> <y> <visible>   (mask=parts)
    PATH/segmentations/<class folder>/<file stem>.png   (mask=segmentation, the default; a separate
                                   download, segmentations.tgz; option segmentations=DIR if elsewhere)

Labels: class id c gives label c - 1; the class names are the class folders (``001.Black_footed_Albatross``);
groups are the labels. Splits: ``train_test_split.txt``'s test images are the test split; of each class's
training images, ``val_fraction`` (default 0.1, rounded to the nearest count) are drawn with the seed as
the val split, the rest are train. ``classes=N`` keeps only the images of classes 1..N (quick runs).
``info["image_ids"]`` lists the image ids of each split, in order.

Masks (1 = ignore). An annotation marks a region: the bird (segmentation, box) or the chosen parts.
``mask_region=relevant`` (default): the region is what the model should look at, so the mask is its
complement (the background, everything outside the box or away from the parts). ``mask_region=ignore``:
the region itself is the mask. ``mask_invert=true`` then flips the mask, as in ``folder:PATH``.

- ``mask=segmentation``: the segmentation (soft, 0..255, the image's size) marks the bird where
  pixel / 255 >= ``mask_threshold`` (default 0.5); it is thresholded at the image's resolution and resized
  by nearest neighbour. An image without its segmentation file is an error.
- ``mask=box``: coordinates are pixels of the original image, origin at its top-left corner (pixel (i, j)
  covers [j, j + 1) x [i, i + 1)). A pixel (r, c) of the resized h x w image is in the box x, y, w_box,
  h_box when its centre in original coordinates, ((c + 0.5) * W / w, (r + 0.5) * H / h), lies in
  [x, x + w_box) x [y, y + h_box). Unresized, an integer box covers exactly columns x .. x + w_box - 1.
- ``mask=parts``: each visible chosen part (``parts=beak,crown,left_eye``: names from parts.txt, an
  underscore for a space; default every part) gives the square of side ``part_size`` pixels of the original
  image (default min(H, W) / 8) centred on it, [px - s/2, px + s/2) x [py - s/2, py + s/2), mapped by the
  same centre rule. An image none of whose chosen parts is visible is not annotated (``has_mask`` False).
- ``mask=none``: no masks (every example un-annotated).

Options: ``size`` (default 224; ``N`` or ``"H,W"``; images are resized bilinearly), ``normalize``,
``stream``, ``workers``, ``cache`` (as in ``folder:PATH``), ``mask``, ``mask_region``, ``mask_invert``,
``mask_threshold``, ``parts``, ``part_size``, ``segmentations``, ``val_fraction``, ``classes``. In memory
the 11,788 images at 224 x 224 take about 7 GB as float32: use ``stream=true`` (or ``classes=N``).
Image paths must resolve inside ``PATH/images`` (and segmentations inside their folder). Errors are one
line naming the file and line (``image_class_labels.txt line 7: ...``).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, UserError
from .csv_common import (
    SPLIT_NAMES,
    one_line_errors,
    open_regular,
    option_bool,
    option_fraction,
    option_names,
    parse_options,
    read_bounded,
    split_generator,
    stratified_split,
)
from .dataset import DataSplits, ExplanationDataset
from .folder import _cache_dir, _parse_normalize, _parse_size, _parse_workers, _streaming_splits
from .image_files import FolderDecoder, _input_range, _resize, read_image
from .registry import register_path_dataset
from .streaming import ExampleCache

NUM_CLASSES = 200
MASKS = ("segmentation", "box", "parts", "none")
REGIONS = ("relevant", "ignore")
#: the largest CUB text file read (part_locs.txt is about 4 MB)
MAX_TEXT_BYTES = 1 << 28
LAYOUT = "images.txt, image_class_labels.txt, train_test_split.txt and images/ of the CUB_200_2011 folder"
DEFAULTS = {"size": 224, "normalize": "none", "stream": False, "workers": 0, "cache": None,
            "mask": "segmentation", "mask_region": "relevant", "mask_invert": False, "mask_threshold": 0.5,
            "parts": None, "part_size": None, "segmentations": None, "val_fraction": 0.1, "classes": None}
_INT = re.compile(r"[0-9]{1,9}")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


# ------------------------------------------------------------------------------------------ decoding


def region_mask(image_hw, size, rects) -> np.ndarray:
    """bool (h, w) at output ``size``: pixels whose centre, in the original ``image_hw`` image's coordinates,
    lies in one of the half-open rectangles ``(x0, y0, x1, y1)``."""
    (big_h, big_w), (h, w) = image_hw, size
    u = (np.arange(w) + 0.5) * big_w / w
    v = (np.arange(h) + 0.5) * big_h / h
    out = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in rects:
        out |= ((v >= y0) & (v < y1))[:, None] & ((u >= x0) & (u < x1))[None, :]
    return out


class RegionDecoder(FolderDecoder):
    """:class:`FolderDecoder` (RGB) whose masks may instead be drawn from geometry: ``regions[j]`` is None
    (the mask file of ``examples[j]``, or no mask) or a list of boxes ``(x, y, w, h)`` (``kind="box"``) or
    part centres ``(x, y)`` (``kind="parts"``), in pixels of the original image; ``flip``: the mask is the
    complement of the region."""

    def __init__(self, examples, size, norm, mask_opts: dict, cache, regions=None, kind: str = "none",
                 part_size=None, flip: bool = False):
        super().__init__(examples, "RGB", 3, size, norm, mask_opts, cache)
        self.regions, self.kind, self.part_size, self.flip = regions, kind, part_size, flip

    def _shapes(self, j: int):
        return None if self.regions is None else self.regions[j]

    def _rects(self, shapes, image_hw):
        if self.kind == "box":
            return [(x, y, x + w, y + h) for x, y, w, h in shapes]
        s = self.part_size if self.part_size is not None else min(image_hw) / 8
        return [(x - s / 2, y - s / 2, x + s / 2, y + s / 2) for x, y in shapes]

    def _read(self, j: int):
        shapes = self._shapes(j)
        if shapes is None:
            return super()._read(j)
        image, where, _, _ = self.examples[j]
        img = read_image(Path(image), where, self.mode, resolved=True)
        region = region_mask(img.shape[:2], self.size, self._rects(shapes, img.shape[:2]))
        return _resize(img, self.size, nearest=False), ~region if self.flip else region

    def _key(self, j: int):
        shapes = self._shapes(j)
        if shapes is None:
            return super()._key(j)
        image = self.examples[j][0]
        try:
            st = os.stat(image)
        except OSError:
            return None
        return ExampleCache.key([[image, st.st_size, st.st_mtime_ns]], list(self.size), self.mode, self.kind,
                                [list(s) for s in shapes], self.part_size, self.flip, self.pillow)


def image_splits(root: Path, source: str, decoder: RegionDecoder, y: np.ndarray, group: np.ndarray,
                 has_mask: np.ndarray, split: np.ndarray, norm, info: dict, stream: bool, workers: int,
                 cache) -> DataSplits:
    """Train / val / test splits (index 0 / 1 / 2 in ``split``) of the decoder's examples: decoded now
    (in memory) or per batch (``stream``), with the same numbers."""
    low, high = _input_range(norm)
    info = {**info, "input_range": [low, high], "annotated": int(np.sum(has_mask)), "stream": stream}
    if stream:
        info.update(workers=workers, cache=None if cache is None else str(cache))
        return _streaming_splits(root, source, cache, workers, decoder, y, group, list(has_mask), split,
                                 (low, high), info)
    h, w = decoder.size
    out = {}
    for i, name in enumerate(SPLIT_NAMES):
        idx = np.flatnonzero(split == i)
        x = np.empty((len(idx), 3, h, w), dtype=np.float32)
        m = np.empty((len(idx), 1, h, w), dtype=np.float32)
        decoder.decode_into(idx, x, m)
        mask = torch.from_numpy(m).bool().expand(-1, 3, -1, -1).contiguous()
        out[name] = ExplanationDataset(
            torch.from_numpy(x), torch.from_numpy(y[idx]), mask, torch.from_numpy(group[idx]),
            torch.from_numpy(np.asarray(has_mask, dtype=bool)[idx]), num_classes=len(info["classes"]),
            num_groups=len(info["groups"]), name=f"{root.name}/{name}", input_range=(low, high))
    info["sizes"] = {s: len(out[s]) for s in SPLIT_NAMES}
    return DataSplits(out["train"], out["val"], out["test"], info)


def image_options(source: str, opts: dict):
    """The options shared with ``folder:PATH``, checked: ``(size, norm, stream, workers, cache)``."""
    if opts["size"] is None:
        raise UserError(f"{source}: option size must be N or H,W (the images have different sizes)")
    size = _parse_size(source, opts["size"])
    norm = _parse_normalize(source, opts["normalize"], 3)
    stream = option_bool(source, "stream", opts["stream"])
    workers = _parse_workers(source, opts["workers"])
    cache = _cache_dir(source, opts["cache"]) if opts["cache"] is not None else None
    for option, given in (("workers", workers != 0), ("cache", cache is not None)):
        if given and not stream:
            raise UserError(f"{source}: option {option} needs stream=true")
    return size, norm, stream, workers, cache


def threshold_option(source: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise UserError(f"{source}: option mask_threshold must be a number in (0, 1], got {value!r}")
    return float(value)


def choice_option(source: str, key: str, value, choices) -> str:
    if value not in choices:
        raise UserError(f"{source}: option {key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def inside(base_real: Path, name: str, where: str, what: str) -> Path:
    """The real path of ``name`` under the real directory ``base_real``, refused (naming ``where``) if it
    resolves outside it."""
    real = Path(os.path.realpath(base_real / name))
    if not real.is_relative_to(base_real):
        raise DataError(f"{where}: {what} {name!r} resolves outside {base_real}")
    return real


def check_exists(path: str, where: str) -> None:
    """A one-line DataError naming ``where`` unless ``path`` is a regular file (nothing is decoded)."""
    open_regular(Path(path), "image file", where, resolved=True)[0].close()


# ------------------------------------------------------------------------------------------ text files


def _show(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def _lines(path: Path, fmt: str) -> list[tuple[int, str]]:
    """The non-blank lines of a CUB text file (lines ``fmt``) as (line number, stripped text)."""
    if not os.path.lexists(path):
        raise DataError(f"{path}: no such file (expected lines '{fmt}'; a CUB_200_2011 folder holds {LAYOUT})")
    raw = read_bounded(path, "CUB text file", MAX_TEXT_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    out = [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not out:
        raise DataError(f"{path}: empty file, expected lines '{fmt}'")
    return out


def _fields(path: Path, n: int, line: str, fmt: str, count: int, rest: bool = False) -> list[str]:
    parts = line.split(None, count - 1) if rest else line.split()
    if len(parts) != count:
        raise DataError(f"{path} line {n}: expected '{fmt}', got {_show(line)}")
    return parts


def _int(path: Path, n: int, cell: str, what: str) -> int:
    if not _INT.fullmatch(cell) or int(cell) < 1:
        raise DataError(f"{path} line {n}: {what} {_show(cell)} is not a positive integer")
    return int(cell)


def _float(path: Path, n: int, cell: str, what: str) -> float:
    if not _FLOAT.fullmatch(cell) or not math.isfinite(float(cell)):
        raise DataError(f"{path} line {n}: {what} {_show(cell)} is not a finite number")
    return float(cell)


def _flag(path: Path, n: int, cell: str, what: str) -> int:
    if cell not in ("0", "1"):
        raise DataError(f"{path} line {n}: {what} {_show(cell)} is not 0 or 1")
    return int(cell)


def _per_image(path: Path, images: dict, fmt: str, count: int, parse) -> dict:
    """image id -> parse(line number, fields) for a file of one line per image id of ``images``."""
    out, lines = {}, {}
    for n, line in _lines(path, fmt):
        cells = _fields(path, n, line, fmt, count)
        image = _int(path, n, cells[0], "image id")
        if image not in images:
            raise DataError(f"{path} line {n}: image id {image} is not in images.txt")
        if image in out:
            raise DataError(f"{path} line {n}: image id {image} already on line {lines[image]}")
        out[image], lines[image] = parse(n, cells[1:]), n
    return out


def _require_all(path: Path, table: dict, ids, images: dict) -> None:
    for image in ids:
        if image not in table:
            raise DataError(f"{path}: no line for image id {image} (images.txt line {images[image][0]})")


def _part_key(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


def _parts(root: Path) -> dict[int, str]:
    """part id -> name, from parts/parts.txt."""
    path = root / "parts" / "parts.txt"
    names, lines = {}, {}
    for n, line in _lines(path, "<part id> <name>"):
        part, name = _fields(path, n, line, "<part id> <name>", 2, rest=True)
        part = _int(path, n, part, "part id")
        if part in names:
            raise DataError(f"{path} line {n}: part id {part} already on line {lines[part]}")
        names[part], lines[part] = name, n
    return names


def _chosen_parts(root: Path, source: str, names: dict, value) -> dict[int, str]:
    """part id -> name of the parts option ``parts`` chooses (every part if None)."""
    if value is None:
        return dict(names)
    by_key = {_part_key(name): part for part, name in names.items()}
    chosen = {}
    for wanted in option_names(source, "parts", value):
        if _part_key(wanted) not in by_key:
            raise DataError(f"{root / 'parts' / 'parts.txt'}: no part named {wanted!r} (option parts); its parts: "
                            f"{', '.join(names.values())}")
        part = by_key[_part_key(wanted)]
        chosen[part] = names[part]
    return chosen


def _part_locations(root: Path, images: dict, names: dict, chosen: dict) -> dict:
    """image id -> [(x, y) of each visible chosen part], from parts/part_locs.txt."""
    path = root / "parts" / "part_locs.txt"
    fmt = "<image id> <part id> <x> <y> <visible>"
    out: dict[int, list] = {}
    seen: dict[tuple[int, int], int] = {}
    for n, line in _lines(path, fmt):
        cells = _fields(path, n, line, fmt, 5)
        image, part = _int(path, n, cells[0], "image id"), _int(path, n, cells[1], "part id")
        if image not in images:
            raise DataError(f"{path} line {n}: image id {image} is not in images.txt")
        if part not in names:
            raise DataError(f"{path} line {n}: part id {part} is not in parts/parts.txt")
        if (image, part) in seen:
            raise DataError(f"{path} line {n}: part {part} of image {image} already on line {seen[image, part]}")
        seen[image, part] = n
        x, y = _float(path, n, cells[2], "x"), _float(path, n, cells[3], "y")
        if _flag(path, n, cells[4], "visible") and part in chosen:
            out.setdefault(image, []).append((x, y))
    return out


# ------------------------------------------------------------------------------------------ loader


@register_path_dataset("cub", default_model="resnet18", default_epochs=30, default_batch_size=32)
@one_line_errors
def load_cub(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """CUB-200-2011's images with segmentation, box or part masks (see the module docstring)."""
    root = Path(path)
    source = f"cub:{path}"
    opts = parse_options(source, options, DEFAULTS)
    size, norm, stream, workers, cache = image_options(source, opts)
    mask_kind = choice_option(source, "mask", opts["mask"], MASKS)
    region = choice_option(source, "mask_region", opts["mask_region"], REGIONS)
    invert = option_bool(source, "mask_invert", opts["mask_invert"])
    flip = (region == "relevant") != invert  # the mask is the complement of the annotated region
    threshold = threshold_option(source, opts["mask_threshold"])
    for option, needs in (("parts", "parts"), ("part_size", "parts"), ("segmentations", "segmentation")):
        if opts[option] is not None and mask_kind != needs:
            raise UserError(f"{source}: option {option} needs mask={needs}")
    part_size = opts["part_size"]
    if part_size is not None and (isinstance(part_size, bool) or not isinstance(part_size, (int, float))
                                  or not math.isfinite(part_size) or part_size <= 0):
        raise UserError(f"{source}: option part_size must be a positive number of pixels, got {part_size!r}")
    val_f = option_fraction(source, "val_fraction", opts["val_fraction"])
    classes = opts["classes"]
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int)
                                or not 2 <= classes <= NUM_CLASSES):
        raise UserError(f"{source}: option classes must be an integer 2..{NUM_CLASSES}, got {classes!r}")
    rng = split_generator(seed, "cub")

    if not root.is_dir():
        raise DataError(f"{root}: no such directory" if not root.exists() else f"{root}: not a directory")
    images_txt = root / "images.txt"
    images: dict[int, tuple[int, str]] = {}
    for n, line in _lines(images_txt, "<image id> <path>"):
        image, rel = _fields(images_txt, n, line, "<image id> <path>", 2, rest=True)
        image = _int(images_txt, n, image, "image id")
        if image in images:
            raise DataError(f"{images_txt} line {n}: image id {image} already on line {images[image][0]}")
        images[image] = (n, rel)
    labels_txt, split_txt = root / "image_class_labels.txt", root / "train_test_split.txt"
    label_of = _per_image(labels_txt, images, "<image id> <class id>", 2,
                          lambda n, c: _class(labels_txt, n, c[0]))
    train_of = _per_image(split_txt, images, "<image id> <is train>", 2,
                          lambda n, c: _flag(split_txt, n, c[0], "is-train value"))
    _require_all(labels_txt, label_of, images, images)
    _require_all(split_txt, train_of, images, images)
    ids = [i for i in images if classes is None or label_of[i] <= classes]

    regions, part_names = None, None
    if mask_kind == "box":
        boxes_txt = root / "bounding_boxes.txt"
        boxes = _per_image(boxes_txt, images, "<image id> <x> <y> <width> <height>", 5,
                           lambda n, c: _box(boxes_txt, n, c))
        _require_all(boxes_txt, boxes, ids, images)
        regions = [[boxes[i]] for i in ids]
    elif mask_kind == "parts":
        part_table = _parts(root)
        chosen = _chosen_parts(root, source, part_table, opts["parts"])
        part_names = list(chosen.values())
        locations = _part_locations(root, images, part_table, chosen)
        regions = [locations.get(i) for i in ids]
    seg_dir = Path(opts["segmentations"]) if opts["segmentations"] is not None else root / "segmentations"
    if mask_kind == "segmentation" and not seg_dir.is_dir():
        raise DataError(f"{seg_dir}: no segmentations directory (CUB's segmentations.tgz, extracted); pass "
                        "segmentations=DIR, or mask=box, mask=parts or mask=none")

    images_dir = root / "images"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: no such directory (expected {LAYOUT})")
    images_real = Path(os.path.realpath(images_dir))
    seg_real = Path(os.path.realpath(seg_dir))
    examples, has_mask = [], []
    for k, image in enumerate(ids):
        n, rel = images[image]
        where = f"{images_dir / rel} (images.txt line {n})"
        real = inside(images_real, rel, f"{images_txt} line {n}", "image path")
        mask_real, mask_where = "", ""
        if mask_kind == "segmentation":
            seg_rel = str(Path(rel).with_suffix(".png"))
            mask_where = f"{seg_dir / seg_rel} (segmentation of images.txt line {n})"
            mask_real = str(inside(seg_real, seg_rel, f"{images_txt} line {n}", "segmentation path"))
            check_exists(mask_real, mask_where)
        if stream:
            check_exists(str(real), where)
        examples.append((str(real), where, mask_real, mask_where))
        has_mask.append(mask_kind == "segmentation" or (regions is not None and regions[k] is not None))

    num_classes = max(label_of[i] for i in ids)
    names = [f"{c:03d}" for c in range(1, num_classes + 1)]
    for image in reversed(ids):
        rel = images[image][1]
        if "/" in rel:
            names[label_of[image] - 1] = rel.split("/")[0]
    y = np.array([label_of[i] - 1 for i in ids], dtype=np.int64)
    is_train = np.array([train_of[i] for i in ids], dtype=bool)
    split = stratified_split(y, rng, val_f, 0.0, np.where(is_train, -1, 2))
    for i, name in enumerate(SPLIT_NAMES):
        if not (split == i).any():
            why = (f"val_fraction={val_f:g} of each class's training images rounds to none"
                   if name == "val" else f"train_test_split.txt has no {name} images")
            raise DataError(f"{root}: the {name} split is empty ({why})")
    decoder = RegionDecoder(examples, size, norm, {"mask_threshold": threshold, "mask_invert": flip},
                            None if cache is None else ExampleCache(cache), regions, mask_kind, part_size, flip)
    ids_array = np.array(ids, dtype=np.int64)
    info = {"dataset": "cub", "path": str(root), "classes": names, "groups": names,
            "split": f"train_test_split.txt; val: {val_f:g} of each class's training images, drawn with the seed",
            "seed": seed, "image_size": list(size), "channels": 3, "normalize": opts["normalize"],
            "mask": mask_kind, "mask_region": region, "mask_invert": invert,
            "mask_threshold": threshold if mask_kind == "segmentation" else None,
            "parts": part_names, "part_size": part_size,
            "segmentations": str(seg_dir) if mask_kind == "segmentation" else None,
            "image_ids": {s: ids_array[split == i].tolist() for i, s in enumerate(SPLIT_NAMES)}}
    return image_splits(root, source, decoder, y, y.copy(), np.array(has_mask, dtype=bool), split, norm, info,
                        stream, workers, cache)


def _class(path: Path, n: int, cell: str) -> int:
    c = _int(path, n, cell, "class id")
    if c > NUM_CLASSES:
        raise DataError(f"{path} line {n}: class id {c} is not in 1..{NUM_CLASSES}")
    return c


def _box(path: Path, n: int, cells: list[str]) -> tuple[float, float, float, float]:
    x, y, w, h = (_float(path, n, c, what) for c, what in zip(cells, ("x", "y", "width", "height")))
    if w < 0 or h < 0:
        raise DataError(f"{path} line {n}: negative box width or height ({w:g} x {h:g})")
    return x, y, w, h
