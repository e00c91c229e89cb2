"""Salient ImageNet (Singla & Feizi, ICLR 2022): ImageNet training images with soft masks of the core and
spurious features of their class. ``load_dataset("salient-imagenet:IMAGES,MASKS", **options)``.

Layout (both folders are downloads of their own)::

    IMAGES/train/<wnid>/<name>.JPEG     the ImageNet training images (IMAGES may also be the train folder)
    MASKS/wordnet_dict.py               a Python dict literal, class index -> wnid (or wnid -> index), bare
                                        (``{0: 'n01440764', ...}``) or assigned (``mapping = {...}``)
    MASKS/<wnid>/image_names_map.csv    which image each mask file belongs to (see below)
    MASKS/<wnid>/feature_<f>/<name>.JPEG   soft mask 0..255 of feature f on image <name> (JPEG or PNG)
    MASKS/discover_spurious_features.csv   the MTurk answers (option ``mturk=FILE`` if elsewhere)

Paths: the spec holds two folders separated by one comma. A folder whose path has a comma in it: write
``salient-imagenet:MASKS`` with option ``images=IMAGES``; with ``images`` the part after the colon is
MASKS, whole. Any other number of commas is an error.

``wordnet_dict.py`` is data: it is parsed (``ast``), its one dict taken with ``ast.literal_eval``, and
never imported or run; anything but literals (a call, a name, a second statement) is an error naming the
line. Keys and values are ints and wnids (folder names: letters, digits, ``_``, ``-``).

``image_names_map.csv``, read by column names, in one of two forms:

- one column per feature (the published form): every header cell is a feature index (``59`` or
  ``feature_59``), each cell below it the name of an image with a mask of that feature (``n01440764_10026``,
  ``.JPEG`` optional); the mask is ``feature_<f>/<name>`` with extension .JPEG, .jpeg, .jpg or .png.
  Empty cells are skipped (columns may differ in length).
- two columns, in either order: ``mask`` (the mask file relative to the class folder,
  ``feature_<f>/<file>``) and ``image`` (the image's name).

An image's file is ``<name>.JPEG`` in ``IMAGES[/train]/<wnid>/`` (a name with an image extension is used as
it is). A mask file under ``feature_<f>/`` that no row names, a row whose image or mask is missing and a
feature with masks but no MTurk answers are errors naming the file and row.

MTurk answers: rows per (class, feature, worker); the columns read are ``Input.class_index`` or
``Input.wordnet_id`` (at least one; both are checked against wordnet_dict.py), ``Input.feature_index``,
``Answer.main`` (``main_object``, ``separate_object`` or ``background``) and, if present, ``WorkerId`` (a
worker answering one feature twice is an error); other columns are ignored. A feature is spurious for its
class when at least 3 answers (of the 5 each feature has) are ``separate_object`` or ``background``, else
core (the rule of the authors' code). ``info["features"]`` lists each class's core and spurious features,
``info["votes"]`` their spurious votes and answers.

Classes: ``classes=`` (wnids or class indices, comma-separated or a list; the labels follow that order) or
``num_classes=N`` (the first N classes, by class index, that have a mask folder); neither: every class with
a mask folder (about 52,000 images: use ``stream=true``). ``info["classes"]`` holds the wnids,
``info["class_indices"]`` their ImageNet indices. Groups are the labels.

Splits: only training images have masks (ImageNet's val images have none), so each class's images are
split with the seed: ``val_fraction`` (default 0.15) and ``test_fraction`` (default 0.15) of them, rounded,
the rest train. ``info["image_names"]`` lists the images of each split, in order.

Pixels: images are preprocessed as the masks were computed: the shorter side resized (bilinear) to
round(size * 256 / 224), then the centre size x size crop (ImageNet's evaluation transform: 256, then 224,
for the default ``size=224``). A mask file is square and covers that crop; it is resized to size x size.

Masks (1 = ignore): the training mask of an image is the union of its spurious features' masks, each
thresholded (pixel / 255 >= ``mask_threshold``, default 0.5) at the mask's resolution and resized by
nearest neighbour; an image without a spurious feature mask has ``has_mask`` False. The soft masks stay
for the metrics (rightreasons.metrics.salient): each split is a :class:`SalientImageNetDataset` (or
:class:`SalientStreamingDataset` with ``stream=true``, which decodes them per batch with the images), whose
:meth:`~SalientImageNetDataset.soft_batch` gives the pixel-wise maximum of the core masks and of the
spurious masks (bilinear, in [0, 1]) of each example.

Options: ``size`` (default 224, one number), ``normalize``, ``stream``, ``workers``, ``cache`` (as in
``folder:PATH``), ``classes``, ``num_classes``, ``mturk``, ``mask_threshold``, ``val_fraction``,
``test_fraction``, ``images``. Errors are one line naming the file and row or line.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch

from ..batch import Batch
from ..errors import DataError, UserError
from .csv_common import (
    SPLIT_NAMES,
    one_line_errors,
    option_fraction,
    parse_options,
    read_bounded,
    read_csv,
    split_generator,
    stratified_split,
)
from .cub import check_exists, image_options, threshold_option
from .dataset import DataSplits, ExplanationDataset
from .folder import MAX_PIXELS, FolderDecoder, _input_range, _make_cache_dir, _resize, read_image
from .registry import register_path_dataset
from .streaming import ExampleCache, StreamingImageDataset

WORDNET_FILE = "wordnet_dict.py"
MAP_FILE = "image_names_map.csv"
MTURK_FILE = "discover_spurious_features.csv"
ANSWERS = ("main_object", "separate_object", "background")
SPURIOUS_ANSWERS = ("separate_object", "background")
#: spurious answers that make a feature spurious (of the 5 workers each feature was shown to)
SPURIOUS_VOTES = 3
COL_CLASS, COL_WNID, COL_FEATURE, COL_ANSWER, COL_WORKER = (
    "Input.class_index", "Input.wordnet_id", "Input.feature_index", "Answer.main", "WorkerId")
MASK_COLUMNS, IMAGE_COLUMNS = ("mask", "mask_name", "mask_file"), ("image", "image_name", "imagenet_name")
MASK_SUFFIXES = (".jpeg", ".jpg", ".png")
IMAGE_SUFFIX = ".JPEG"
#: the largest wordnet_dict.py read (the 1000-class file is about 20 kB)
MAX_DICT_BYTES = 1 << 22
LAYOUT = "wordnet_dict.py, <wnid>/image_names_map.csv and <wnid>/feature_<f>/ of the Salient ImageNet download"
DEFAULTS = {"size": 224, "normalize": "none", "stream": False, "workers": 0, "cache": None, "classes": None,
            "num_classes": None, "mturk": None, "mask_threshold": 0.5, "val_fraction": 0.15,
            "test_fraction": 0.15, "images": None}
_WNID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FEATURE = re.compile(r"(?:feature_)?([0-9]{1,9})")
_INDEX = re.compile(r"[0-9]{1,9}")


def _show(text: str) -> str:
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


# ------------------------------------------------------------------------------------------ wordnet_dict.py


class WordNet(NamedTuple):
    """wordnet_dict.py: class index -> wnid, wnid -> index, and the file."""

    wnid: dict
    index: dict
    path: Path


def _statement(node: ast.stmt) -> str:
    return {ast.Expr: "an expression", ast.Assign: "an assignment", ast.Import: "an import",
            ast.ImportFrom: "an import"}.get(type(node), f"a {type(node).__name__} statement")


def _literal(path: Path, node: ast.expr):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        raise DataError(f"{path} line {getattr(node, 'lineno', '?')}: not a literal (a call, a name or an "
                        "operator); the file is read as data, never run") from None


def read_wordnet(path: Path) -> WordNet:
    """The class table of ``wordnet_dict.py``: its one dict literal, parsed, never run."""
    if not os.path.lexists(path):
        raise DataError(f"{path}: no such file (expected {LAYOUT})")
    raw = read_bounded(path, "wordnet_dict.py", MAX_DICT_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        tree = ast.parse(text, filename=str(path), mode="exec")
    except SyntaxError as exc:
        raise DataError(f"{path} line {exc.lineno}: not a Python dict literal ({exc.msg})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise DataError(f"{path}: cannot parse it as a Python dict literal ({type(exc).__name__})") from None
    found = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # a docstring
        value = None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            value = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            value = stmt.value
        elif isinstance(stmt, ast.Expr):
            value = stmt.value
        if not isinstance(value, ast.Dict):
            raise DataError(f"{path} line {stmt.lineno}: expected only a dict literal ({{...}} or name = {{...}}), "
                            f"found {_statement(stmt)}; the file is read as data, never run")
        if found is not None:
            raise DataError(f"{path} line {stmt.lineno}: a second dict (the first is on line {found.lineno})")
        found = value
    if found is None:
        raise DataError(f"{path}: no dict literal (expected {{0: 'n01440764', ...}} or name = {{...}})")
    wnid, index, lines, forward = {}, {}, {}, None
    for key_node, value_node in zip(found.keys, found.values):
        line = getattr(key_node or value_node, "lineno", found.lineno)
        if key_node is None:
            raise DataError(f"{path} line {line}: ** unpacking is not a literal entry")
        key, value = _literal(path, key_node), _literal(path, value_node)
        direction = _entry_kind(key, value)
        if direction is None:
            raise DataError(f"{path} line {line}: entry {key!r}: {value!r} is not class index -> wnid or wnid -> "
                            "class index (indices are integers >= 0; wnids letters, digits, _ and -)")
        if forward is not None and direction != forward:
            raise DataError(f"{path} line {line}: entry {key!r}: {value!r} maps the other way from the entries "
                            "before it")
        forward = direction
        i, w = (key, value) if forward else (value, key)
        if i in wnid:
            raise DataError(f"{path} line {line}: class index {i} already on line {lines[i]}")
        if w in index:
            raise DataError(f"{path} line {line}: wnid {w!r} already on line {lines[index[w]]}")
        wnid[i], index[w], lines[i] = w, i, line
    if not wnid:
        raise DataError(f"{path}: the dict is empty")
    return WordNet(wnid, index, path)


def _entry_kind(key, value) -> Optional[bool]:
    """True for index -> wnid, False for wnid -> index, None for neither."""
    def is_index(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    def is_wnid(v):
        return isinstance(v, str) and bool(_WNID.fullmatch(v))

    if is_index(key) and is_wnid(value):
        return True
    if is_wnid(key) and is_index(value):
        return False
    return None


# ------------------------------------------------------------------------------------------ MTurk answers


def read_mturk(path: Path, wordnet: WordNet) -> dict:
    """(class index, feature index) -> [spurious answers, answers, first row] from the MTurk CSV."""
    if not os.path.lexists(path):
        raise DataError(f"{path}: no such file (the MTurk answers, {MTURK_FILE} of Salient ImageNet; pass "
                        "mturk=FILE if it is elsewhere)")
    header, rows = read_csv(path, "MTurk answers CSV")
    for column in (COL_FEATURE, COL_ANSWER):
        if column not in header:
            raise DataError(f"{path}: missing column {column!r} (expected {COL_CLASS} or {COL_WNID}, {COL_FEATURE} "
                            f"and {COL_ANSWER}; header: {', '.join(header)[:200]})")
    if COL_CLASS not in header and COL_WNID not in header:
        raise DataError(f"{path}: missing column {COL_CLASS!r} (or {COL_WNID!r}); header: {', '.join(header)[:200]}")
    at = {name: header.index(name) for name in (COL_CLASS, COL_WNID, COL_FEATURE, COL_ANSWER, COL_WORKER)
          if name in header}
    votes: dict = {}
    workers: dict = {}
    for row, cells in rows:
        where = f"{path} row {row}"
        feature = _index(where, COL_FEATURE, cells[at[COL_FEATURE]])
        answer = cells[at[COL_ANSWER]].lower()
        if answer not in ANSWERS:
            raise DataError(f"{where}, column {COL_ANSWER!r}: answer {_show(cells[at[COL_ANSWER]])} is not one of "
                            f"{', '.join(ANSWERS)}")
        cls = _index(where, COL_CLASS, cells[at[COL_CLASS]]) if COL_CLASS in at else None
        if COL_WNID in at:
            w = cells[at[COL_WNID]]
            if cls is None:
                cls = wordnet.index.get(w)
                if cls is None:
                    continue  # a class wordnet_dict.py does not have
            elif cls in wordnet.wnid and wordnet.wnid[cls] != w:
                raise DataError(f"{where}: {COL_WNID} {_show(w)} but {wordnet.path.name} says class {cls} is "
                                f"{wordnet.wnid[cls]!r}")
        if COL_WORKER in at:
            key = (cls, feature, cells[at[COL_WORKER]])
            if key in workers:
                raise DataError(f"{where}: worker {_show(key[2])} already answered class {cls}, feature {feature} "
                                f"on row {workers[key]}")
            workers[key] = row
        entry = votes.setdefault((cls, feature), [0, 0, row])
        entry[0] += answer in SPURIOUS_ANSWERS
        entry[1] += 1
    return votes


def _index(where: str, column: str, cell: str) -> int:
    if not _INDEX.fullmatch(cell):
        raise DataError(f"{where}, column {column!r}: {_show(cell)} is not a non-negative integer")
    return int(cell)


# ------------------------------------------------------------------------------------------ image_names_map.csv


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
        match = re.fullmatch(r"feature_([0-9]{1,9})", entry.name)
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
            match = re.fullmatch(r"feature_([0-9]{1,9})/([^/\\]+)", cells[m_at])
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


# ------------------------------------------------------------------------------------------ decoding


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """ImageNet's evaluation transform: shorter side resized (bilinear) to round(size * 256 / 224), then the
    centre size x size crop (offsets rounded as torchvision rounds them)."""
    h, w = img.shape[:2]
    short = int(round(size * 256 / 224))
    oh, ow = (int(short * h / w), short) if w <= h else (short, int(short * w / h))
    if oh * ow > MAX_PIXELS:
        raise DataError(f"image is {h}x{w}: resized to {oh}x{ow} it would have more than {MAX_PIXELS} pixels")
    out = _resize(img, (oh, ow), nearest=False)
    top, left = int(round((oh - size) / 2.0)), int(round((ow - size) / 2.0))
    return out[top:top + size, left:left + size]


class SalientDecoder(FolderDecoder):
    """:class:`FolderDecoder` (RGB) for Salient ImageNet: per example the centre-cropped image, the training
    mask (union of its spurious masks, thresholded) and its core and spurious soft masks (uint8 0..255).
    ``examples[j]`` is (image real path, its name in messages, ((mask real path, its name, spurious), ...))."""

    def __init__(self, examples, size, norm, threshold: float, cache: Optional[ExampleCache]):
        super().__init__([], "RGB", 3, size, norm, {"mask_threshold": threshold, "mask_invert": False}, cache)
        self.examples = examples

    def _read_all(self, j: int):
        image, where, masks = self.examples[j]
        n = self.size[0]
        img = read_image(Path(image), where, "RGB", resolved=True)
        try:
            img = centre_crop(img, n)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        soft = {True: None, False: None}
        first = None
        for path, mask_where, spurious in masks:
            m = read_image(Path(path), mask_where, "L", resolved=True)
            if m.shape[0] != m.shape[1]:
                raise DataError(f"{mask_where}: mask is {m.shape[0]}x{m.shape[1]}; Salient ImageNet masks are square "
                                "(they cover the image's centre crop)")
            if first is not None and m.shape != first[0]:
                raise DataError(f"{mask_where}: mask is {m.shape[0]}x{m.shape[1]} but {first[1]} is "
                                f"{first[0][0]}x{first[0][1]}")
            first = first or (m.shape, mask_where)
            soft[spurious] = m if soft[spurious] is None else np.maximum(soft[spurious], m)
        zeros = np.zeros((n, n), dtype=np.uint8)
        spur = soft[True]
        train = (zeros.astype(bool) if spur is None else
                 _resize((spur.astype(np.float32) / 255 >= self.mask_opts["mask_threshold"]).astype(np.uint8),
                         (n, n), nearest=True).astype(bool))
        core_s = zeros if soft[False] is None else _resize(soft[False], (n, n), nearest=False)
        spur_s = zeros if spur is None else _resize(spur, (n, n), nearest=False)
        return img, train, core_s, spur_s

    def _key(self, j: int):
        image, _, masks = self.examples[j]
        try:
            st = os.stat(image)
            parts = [[p, os.stat(p).st_size, os.stat(p).st_mtime_ns, s] for p, _, s in masks]
        except OSError:
            return None
        return ExampleCache.key([image, st.st_size, st.st_mtime_ns], parts, list(self.size), "salient-imagenet",
                                self.mask_opts["mask_threshold"], self.pillow)

    def full(self, j: int):
        """uint8 image (n, n, 3), bool training mask, uint8 core and spurious soft masks (n, n) of example ``j``."""
        key = self._key(j) if self.cache is not None else None
        if key is None:
            return self._read_all(j)
        n = self.size[0]
        pixels, plane = n * n * 3, n * n

        def build():
            img, m, c, s = self._read_all(j)
            return np.concatenate([img.reshape(-1), m.reshape(-1).astype(np.uint8), c.reshape(-1), s.reshape(-1)])

        flat = self.cache.get(key, pixels + 3 * plane, build)
        planes = [flat[pixels + k * plane:pixels + (k + 1) * plane].reshape(n, n) for k in range(3)]
        return flat[:pixels].reshape(n, n, 3), planes[0] != 0, planes[1], planes[2]

    def example(self, j: int):
        img, m, _, _ = self.full(j)
        return img, m

    @one_line_errors
    def decode_salient(self, rows: np.ndarray, x: np.ndarray, mask: np.ndarray, core: np.ndarray,
                       spurious: np.ndarray) -> None:
        """Inputs (B, 3, n, n) and masks (B, 1, n, n) as :meth:`decode_into` writes them, and the core and
        spurious soft masks (B, 1, n, n, uint8 or float32 0..255), in place."""
        for k, j in enumerate(rows):
            img, m, c, s = self.full(int(j))
            x[k] = img.transpose(2, 0, 1)
            mask[k, 0], core[k, 0], spurious[k, 0] = m, c, s
        np.divide(x, np.float32(255), out=x)
        if self.norm is not None:
            np.subtract(x, np.array(self.norm[0], dtype=np.float32).reshape(1, -1, 1, 1), out=x)
            np.divide(x, np.array(self.norm[1], dtype=np.float32).reshape(1, -1, 1, 1), out=x)


# ------------------------------------------------------------------------------------------ datasets


class SoftMasks(NamedTuple):
    """The soft masks of a batch: core and spurious (float (B, 1, H, W) in [0, 1], the maximum over the
    example's features of each kind) and whether the example has any mask of each kind (bool (B,))."""

    core: torch.Tensor
    spurious: torch.Tensor
    has_core: torch.Tensor
    has_spurious: torch.Tensor


def _as_soft(t: torch.Tensor) -> torch.Tensor:
    return t.float() / 255 if t.dtype == torch.uint8 else t.float()


class SalientImageNetDataset(ExplanationDataset):
    """An :class:`ExplanationDataset` with the core and spurious soft masks of each example (``core_mask``,
    ``spurious_mask``: (N, 1, H, W), uint8 0..255 or float in [0, 1]) and ``has_core``; ``has_mask`` says
    whether it has a spurious mask. ``normalization``: the (mean, std) per channel the inputs were
    normalised with (None: pixels in [0, 1]), so that noise can be added in pixel units."""

    def __init__(self, x, y, mask, group, has_mask, core_mask, spurious_mask, has_core, *,
                 normalization=None, **kwargs):
        super().__init__(x, y, mask, group, has_mask, **kwargs)
        if self.x.dim() != 4:
            raise DataError(f"{self.name}: x must be images (N, C, H, W) to have soft masks, got {tuple(self.x.shape)}")
        n, h, w = len(self), self.x.shape[2], self.x.shape[3]
        for what, t in (("core_mask", core_mask), ("spurious_mask", spurious_mask)):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n, 1, h, w):
                raise DataError(f"{self.name}: {what} must be a tensor of shape ({n}, 1, {h}, {w}), got "
                                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
            if t.dtype != torch.uint8 and (not t.is_floating_point() or (len(t) and not bool(((t >= 0) & (t <= 1))
                                                                                              .all()))):
                raise DataError(f"{self.name}: {what} must be uint8 (0..255) or float in [0, 1]")
        has_core = torch.as_tensor(has_core)
        if tuple(has_core.shape) != (n,):
            raise DataError(f"{self.name}: has_core has shape {tuple(has_core.shape)}; expected ({n},)")
        self.core_mask, self.spurious_mask, self.has_core = core_mask, spurious_mask, has_core.bool()
        self.normalization = normalization

    def soft_batch(self, index) -> tuple[Batch, SoftMasks]:
        """The examples at ``index`` and their soft masks."""
        return self.batch(index), SoftMasks(_as_soft(self.core_mask[index]), _as_soft(self.spurious_mask[index]),
                                            self.has_core[index].reshape(-1), self.has_mask[index].reshape(-1))

    def subset(self, index: torch.Tensor) -> "SalientImageNetDataset":
        return SalientImageNetDataset(
            self.x[index], self.y[index], self.mask[index], self.group[index], self.has_mask[index],
            self.core_mask[index], self.spurious_mask[index], self.has_core[index], normalization=self.normalization,
            num_classes=self.num_classes, num_groups=self.num_groups, name=self.name, input_range=self.input_range)


class SalientStreamingDataset(StreamingImageDataset):
    """A :class:`StreamingImageDataset` of a :class:`SalientDecoder`, with :meth:`soft_batch` (decoded in this
    process, the image and all its masks at once) and ``has_core``."""

    def __init__(self, decoder: SalientDecoder, rows, y, group, has_mask, has_core, *, normalization=None,
                 **kwargs):
        super().__init__(decoder, rows, y, group, has_mask, **kwargs)
        has_core = torch.as_tensor(has_core).bool()
        if tuple(has_core.shape) != (len(self),):
            raise DataError(f"{self.name}: has_core has shape {tuple(has_core.shape)}; expected ({len(self)},)")
        self.has_core, self.normalization = has_core, normalization

    def soft_batch(self, index) -> tuple[Batch, SoftMasks]:
        pos = torch.arange(len(self))[index].reshape(-1)
        c, h, w = self.input_shape
        x = np.empty((len(pos), c, h, w), dtype=np.float32)
        planes = [np.empty((len(pos), 1, h, w), dtype=np.float32) for _ in range(3)]
        self.decoder.decode_salient(self.rows[pos.numpy()], x, *planes)
        xt = torch.from_numpy(x)
        batch = Batch(xt, self.y[pos], torch.from_numpy(planes[0]).expand(xt.shape), self.group[pos],
                      self.has_mask[pos])
        return batch, SoftMasks(torch.from_numpy(planes[1]) / 255, torch.from_numpy(planes[2]) / 255,
                                self.has_core[pos], self.has_mask[pos])

    def subset(self, index: torch.Tensor) -> "SalientStreamingDataset":
        pos = torch.arange(len(self))[index].reshape(-1)
        return SalientStreamingDataset(
            self.decoder, self.rows[pos.numpy()], self.y[pos], self.group[pos], self.has_mask[pos], self.has_core[pos],
            normalization=self.normalization, num_classes=self.num_classes, num_groups=self.num_groups,
            name=self.name, input_range=self.input_range, input_shape=self.input_shape, workers=self.workers,
            pin_memory=self.pin_memory)


# ------------------------------------------------------------------------------------------ loader


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
        index = isinstance(t, int) and not isinstance(t, bool) and t >= 0
        if not (index or (isinstance(t, str) and _WNID.fullmatch(t))):
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
    if classes is not None:
        chosen = []
        for t in _class_tokens(source, classes):
            i = t if isinstance(t, int) else wordnet.index.get(t)
            if i is None or i not in wordnet.wnid:
                raise DataError(f"{wordnet.path}: no class {t!r} (option classes)")
            if not (masks / wordnet.wnid[i] / MAP_FILE).is_file():
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
        if (masks / wordnet.wnid[i] / MAP_FILE).is_file():
            chosen.append(i)
    if len(chosen) < (limit or 2):
        raise DataError(f"{masks}: only {len(chosen)} classes of {wordnet.path.name} have a folder with {MAP_FILE}"
                        + ("" if limit is None else f" (option num_classes={limit})"))
    return chosen


@register_path_dataset("salient-imagenet", default_model="resnet18", default_epochs=30, default_batch_size=32)
@one_line_errors
def load_salient_imagenet(path: str, seed: int = 0, **options) -> DataSplits:
    """Salient ImageNet's images with the union of their spurious masks as the mask (see the module docstring)."""
    source = f"salient-imagenet:{path}"
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
    rng = split_generator(seed, "salient-imagenet")
    images_arg, masks_arg = split_paths(path, opts["images"])
    images = _folder(images_arg, "the ImageNet images, IMAGES")
    images = images / "train" if (images / "train").is_dir() else images
    masks = _folder(masks_arg, "the Salient ImageNet masks, MASKS")
    wordnet = read_wordnet(masks / WORDNET_FILE)
    mturk = Path(opts["mturk"]) if opts["mturk"] is not None else masks / MTURK_FILE
    chosen = select_classes(source, masks, wordnet, opts["classes"], opts["num_classes"])
    votes = read_mturk(mturk, wordnet)

    examples, y, has_mask, has_core, names = [], [], [], [], []
    features_info, votes_info = {}, {}
    for label, cls in enumerate(chosen):
        wnid = wordnet.wnid[cls]
        class_dir = masks / wnid
        entries = read_map(class_dir)
        kinds = {}
        for e in entries:
            if e.feature not in kinds:
                v = votes.get((cls, e.feature))
                if v is None:
                    raise DataError(f"{class_dir / MAP_FILE}: feature {e.feature} has masks but {mturk} has no answers "
                                    f"for class {cls} ({wnid}), feature {e.feature}")
                kinds[e.feature] = v[0] >= SPURIOUS_VOTES
        features_info[wnid] = {"core": sorted(f for f, s in kinds.items() if not s),
                               "spurious": sorted(f for f, s in kinds.items() if s)}
        votes_info[wnid] = {str(f): {"spurious": votes[cls, f][0], "answers": votes[cls, f][1]} for f in sorted(kinds)}
        by_image: dict = {}
        for e in entries:
            by_image.setdefault(e.image, []).append(e)
        class_images = images / wnid
        for image in sorted(by_image):
            group = sorted(by_image[image], key=lambda e: e.feature)
            file = image if image.lower().endswith((".jpeg", ".jpg", ".png")) else image + IMAGE_SUFFIX
            where = f"{class_images / file} ({group[0].row})"
            real = os.path.realpath(class_images / file)
            check_exists(real, where)
            mask_list = []
            for e in group:
                mask_where = f"{e.mask} ({e.where})"
                check_exists(e.mask, mask_where)
                mask_list.append((e.mask, mask_where, kinds[e.feature]))
            examples.append((real, where, tuple(mask_list)))
            y.append(label)
            has_mask.append(any(s for _, _, s in mask_list))
            has_core.append(any(not s for _, _, s in mask_list))
            names.append(image)

    y = np.array(y, dtype=np.int64)
    split = stratified_split(y, rng, val_f, test_f)
    for i, name in enumerate(SPLIT_NAMES):
        if not (split == i).any():
            raise DataError(f"{masks}: the {name} split is empty (too few images for val_fraction={val_f:g}, "
                            f"test_fraction={test_f:g})")
    decoder = SalientDecoder(examples, size, norm, threshold, None if cache is None else ExampleCache(cache))
    low, high = _input_range(norm)
    wnids = [wordnet.wnid[c] for c in chosen]
    names_array = np.array(names, dtype=object)
    info = {"dataset": "salient-imagenet", "images_path": str(images), "masks_path": str(masks),
            "mturk": str(mturk), "classes": wnids, "groups": wnids, "class_indices": chosen,
            "features": features_info, "votes": votes_info,
            "split": f"seeded per class: {val_f:g} val, {test_f:g} test", "seed": seed,
            "image_size": list(size), "channels": 3, "normalize": opts["normalize"], "input_range": [low, high],
            "mask_threshold": threshold, "annotated": int(sum(has_mask)), "stream": stream,
            "image_names": {s: names_array[split == i].tolist() for i, s in enumerate(SPLIT_NAMES)}}
    normalization = None if norm is None else (tuple(norm[0]), tuple(norm[1]))
    has_mask_t, has_core_t = torch.tensor(has_mask, dtype=torch.bool), torch.tensor(has_core, dtype=torch.bool)
    out = {}
    n = size[0]
    if stream:
        if cache is not None:
            _make_cache_dir(source, cache)
        info.update(workers=workers, cache=None if cache is None else str(cache))
        for i, name in enumerate(SPLIT_NAMES):
            idx = np.flatnonzero(split == i)
            out[name] = SalientStreamingDataset(
                decoder, idx, torch.from_numpy(y[idx]), torch.from_numpy(y[idx]), has_mask_t[idx], has_core_t[idx],
                normalization=normalization, num_classes=len(chosen), num_groups=len(chosen),
                name=f"salient-imagenet/{name}", input_range=(low, high), input_shape=(3, n, n), workers=workers)
    else:
        for i, name in enumerate(SPLIT_NAMES):
            idx = np.flatnonzero(split == i)
            x = np.empty((len(idx), 3, n, n), dtype=np.float32)
            m = np.empty((len(idx), 1, n, n), dtype=np.float32)
            core = np.empty((len(idx), 1, n, n), dtype=np.uint8)
            spur = np.empty((len(idx), 1, n, n), dtype=np.uint8)
            decoder.decode_salient(idx, x, m, core, spur)
            out[name] = SalientImageNetDataset(
                torch.from_numpy(x), torch.from_numpy(y[idx]), torch.from_numpy(m).bool().expand(-1, 3, -1, -1),
                torch.from_numpy(y[idx]), has_mask_t[idx], torch.from_numpy(core), torch.from_numpy(spur),
                has_core_t[idx], normalization=normalization, num_classes=len(chosen), num_groups=len(chosen),
                name=f"salient-imagenet/{name}", input_range=(low, high))
    info["sizes"] = {s: len(out[s]) for s in SPLIT_NAMES}
    return DataSplits(out["train"], out["val"], out["test"], info)

