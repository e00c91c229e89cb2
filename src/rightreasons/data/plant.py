"""Heo et al.'s sugar-beet phenotyping images (NeurIPS 2023, robust_mlx): ``load_dataset("plant:PATH", **options)``
(CLI: ``--data plant:PATH``). The files are the ones the authors published; download them yourself.

Layout::

    PATH/rgb_data/<day>/<sample id>.JPEG          the images
    PATH/rgb_dataset_splits/train_<k>.txt          fold k's file lists, one entry a line
    PATH/rgb_dataset_splits/test_<k>.txt
    PATH/rgb_dataset_splits/val_<k>.txt            (optional; else val is carved from train)
    PATH/mask/preprocessed_masks.pyu               pickle of {file stem: bool (H, W) array}, True = plant

- Split-file entries: blank lines are skipped; an entry is either a file stem (the sample id, as
  robust_mlx's lists hold them, e.g. ``1_Z12_3``: the image is ``rgb_data/<day>/<stem>.JPEG``, with
  ``<day>`` the stem's part before its first ``_``; .jpeg, .jpg and .png are tried after .JPEG) or a
  path relative to rgb_data (``1/1_Z12_3.JPEG``; without an image suffix the same suffixes are tried).
  A path outside rgb_data, an entry listed twice (in one list or two) or a missing image is an error
  naming the list and the line. Option ``fold=K`` (default 0) picks the lists.
- Labels (robust_mlx's rule): the stem is ``<day>_<letters><sample number>[_...]``; samples 1-3 of each
  day are healthy (label 0), all others diseased (label 1). Groups = labels (``healthy``, ``diseased``).
- Masks (1 = ignore): the background, where the pickle says False. The pickle is read with a restricted
  unpickler that resolves only numpy array reconstruction (any other global, e.g. ``os.system``, is
  refused before anything runs); each listed stem's mask must be a bool (H, W) array of its image's size.
- Validation and test images have their background (mask = 1) filled with the training split's
  per-channel mean pixel (as Heo et al. do): the mean of every pixel of every training image, resized,
  in [0, 1]. The fill is applied to the resized image, after the mask is resized, so those pixels equal
  the mean exactly (robust_mlx fills before resizing, with the mean truncated to uint8, and also
  doubles the brightness of every image, which is not done here). The mean is computed when the data
  are loaded, in one pass over the training images (in memory: the same pass that decodes them; with
  ``stream=true`` a pass of its own, and with ``cache=DIR`` the per-channel sums are kept in DIR, so a
  later load decodes nothing). ``info["train_mean"]`` records it.
- Val: ``val_<k>.txt`` if it exists, else ``val_fraction`` (default 0.1) of each class of the train
  list, drawn by ``numpy.random.default_rng(split_seed)`` (default 42; robust_mlx draws 10% of train
  without stratifying). Examples keep their list order within a split.

Options: ``fold``, ``size`` (``N`` or ``"H,W"``, default 224 as robust_mlx; images bilinear, masks
nearest), ``normalize`` (as ``folder:``), ``val_fraction``, ``split_seed``, ``stream`` / ``workers`` /
``cache`` (as ``folder:``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import DataError, UserError
from .csv_common import (
    SPLIT_NAMES,
    one_line_errors,
    open_regular,
    option_fraction,
    parse_options,
    read_bounded,
    stratified_split,
)
from .dataset import DataSplits
from .folder import _make_cache_dir, _parse_normalize, _parse_size, _streaming_splits
from .image_files import MAX_PIXELS, FolderDecoder, _input_range, _resize, read_image
from .isic import CHUNK, HEO, count_option, memory_dataset, stream_options
from .mnist_source import RestrictedUnpickler, _latin1_encode
from .registry import register_path_dataset
from .streaming import ExampleCache

CLASSES = ["healthy", "diseased"]
#: sample numbers of a day that are healthy (robust_mlx: 1-3 are never inoculated)
HEALTHY = range(1, 4)
SUFFIXES = (".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG")
MASK_FILE = "mask/preprocessed_masks.pyu"
MAX_LIST_BYTES = 64 << 20
STEM = re.compile(r"([0-9]+)_[A-Za-z]+([0-9]+)(?:_.*)?")
DEFAULTS = {"fold": 0, "size": 224, "normalize": "none", "val_fraction": 0.1, "split_seed": 42,
            "stream": False, "workers": 0, "cache": None}


# ----------------------------------------------------------------------------------------------------------
# The mask pickle


def _mask_globals() -> dict:
    """The only globals a pickle of a dict of numpy arrays names (protocols 0-5, numpy 1 and 2)."""
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # protocol 5
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,  # bytes in protocols 0-2: latin-1 only
    }


class MaskUnpickler(RestrictedUnpickler):
    """The MNIST unpickler's pattern with its own allow-list: numpy array reconstruction (also protocol 5's
    ``_frombuffer``), dtypes and latin-1 bytes; any other global is refused before it is looked up."""

    def find_class(self, module: str, name: str):
        try:
            return _mask_globals()[(module, name)]
        except KeyError:
            raise DataError(f"restricted unpickler refuses to load global '{module}.{name}' (only numpy "
                            "arrays are allowed)") from None


def load_masks(path: Path) -> dict:
    """The ``{stem: array}`` dict of the mask pickle at ``path``, read with :class:`MaskUnpickler`."""
    fh, _ = open_regular(path, "mask pickle")
    with fh:
        try:
            obj = MaskUnpickler(fh, encoding="latin1").load()
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        except Exception as exc:  # corrupt or truncated
            raise DataError(f"{path}: cannot unpickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict of file stem -> bool mask, got {type(obj).__name__}")
    return obj


def _plant_mask(masks: dict, stem: str, path: Path) -> np.ndarray:
    if stem not in masks:
        raise DataError(f"{path}: no mask for {stem!r} (listed in the split files)")
    m = masks[stem]
    if not isinstance(m, np.ndarray) or m.dtype != np.bool_ or m.ndim != 2 or 0 in m.shape:
        what = f"{m.dtype} array of shape {m.shape}" if isinstance(m, np.ndarray) else type(m).__name__
        raise DataError(f"{path}: mask {stem!r} is a {what}; expected a bool (H, W) array (True = plant)")
    if m.size > MAX_PIXELS:
        raise DataError(f"{path}: mask {stem!r} is {m.shape[0]}x{m.shape[1]}, more than {MAX_PIXELS} pixels")
    return m


# ----------------------------------------------------------------------------------------------------------
# Split lists


def label_of(stem: str, where: str) -> int:
    """0 (healthy: sample 1-3 of its day) or 1 (diseased) from a stem ``<day>_<letters><sample>[_...]``."""
    match = STEM.fullmatch(stem)
    if match is None or int(match.group(2)) < 1:
        raise DataError(f"{where}: {stem!r} is not a sample id <day>_<letters><sample number>[_...] "
                        "(e.g. 1_Z12_3)")
    return 0 if int(match.group(2)) in HEALTHY else 1


def entry_candidates(data_dir: Path, entry: str, where: str) -> tuple[list[Path], str, int]:
    """(the image paths one split-file entry may name, in the order tried; stem; label); a malformed entry
    is a DataError naming ``where``. Shared by the loader and ``rightreasons data verify``."""
    rel = PurePosixPath(entry)
    if rel.is_absolute() or ".." in rel.parts or "\\" in entry:
        raise DataError(f"{where}: {entry!r} is not a file stem or a path inside {data_dir}")
    has_suffix = rel.suffix.lower() in {s.lower() for s in SUFFIXES}
    stem = rel.stem if has_suffix else rel.name
    label = label_of(stem, where)
    if len(rel.parts) == 1:  # a stem or a file name: in the folder of its day
        rel = PurePosixPath(stem.split("_")[0], rel.name)
    candidates = [data_dir / rel] if has_suffix else [data_dir / rel.parent / (rel.name + s) for s in SUFFIXES]
    return candidates, stem, label


def _entry_path(data_dir: Path, entry: str, where: str) -> tuple[Path, str, int]:
    """(image path, stem, label) of one split-file entry (a stem or a path relative to rgb_data)."""
    candidates, stem, label = entry_candidates(data_dir, entry, where)
    for candidate in candidates:
        if os.path.lexists(candidate):
            return candidate, stem, label
    raise DataError(f"{where}: no image {candidates[0]}" + (" (nor .jpeg, .jpg, .png)" if len(candidates) > 1 else ""))


def read_list(list_path: Path, data_dir: Path, seen: dict) -> list[tuple[Path, str, int, str]]:
    """(image path, stem, label, where) of each entry of a split file; ``seen`` (stem -> where) catches
    repeats."""
    raw = read_bounded(list_path, "split list", MAX_LIST_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{list_path}: not UTF-8 text (byte offset {exc.start})") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        where = f"{list_path} line {number}"
        path, stem, label = _entry_path(data_dir, entry, where)
        if stem in seen:
            raise DataError(f"{where}: {stem!r} is already listed ({seen[stem]})")
        seen[stem] = where
        out.append((path, stem, label, where))
    return out


# ----------------------------------------------------------------------------------------------------------
# Decoding


class PlantDecoder(FolderDecoder):
    """Decodes plant examples with image_files.py's reading, resizing and cache; masks come from the pickle,
    resized at load and kept bit-packed; ``fill`` rows (val, test) get the training mean where mask = 1."""

    def __init__(self, examples, size, norm, masks, shapes, pickle_stat, fill_rows, cache: ExampleCache | None):
        super().__init__(examples, "RGB", 3, size, None, {"mask_threshold": None, "mask_invert": False}, cache)
        self.plant_norm = norm  # applied after the fill (FolderDecoder's own is off)
        self.masks, self.shapes, self.pickle_stat = masks, shapes, pickle_stat
        self.fill_rows = np.asarray(fill_rows, dtype=bool)
        self.fill_value = None  # float32 (3,), set once the training mean is known

    def _read(self, j: int):
        image, where, stem, pickle_path = self.examples[j]
        img = read_image(Path(image), where, "RGB", resolved=True)
        if img.shape[:2] != self.shapes[j]:
            h, w = self.shapes[j]
            raise DataError(f"{where}: image is {img.shape[0]}x{img.shape[1]} but its mask {stem!r} in "
                            f"{pickle_path} is {h}x{w}")
        (h, w) = self.size
        m = np.unpackbits(self.masks[j], count=h * w).reshape(h, w).astype(bool)
        return _resize(img, self.size, nearest=False), m

    def _key(self, j: int):
        image = self.examples[j][0]
        try:
            st = os.stat(image)
        except OSError:
            return None
        return ExampleCache.key([image, st.st_size, st.st_mtime_ns], list(self.size), self.mode, self.pillow,
                                "plant", self.pickle_stat, self.examples[j][2])

    @one_line_errors
    def decode_into(self, rows: np.ndarray, x: np.ndarray, mask: np.ndarray, sums: np.ndarray | None = None) -> None:
        """As :meth:`FolderDecoder.decode_into`, then the fill of val / test rows, then normalisation;
        ``sums`` (int64 (3,)): the uint8 images' per-channel pixel sums are added to it."""
        for k, j in enumerate(rows):
            img, m = self.example(int(j))
            if sums is not None:
                sums += img.reshape(-1, 3).sum(0, dtype=np.int64)
            x[k] = img.transpose(2, 0, 1)
            mask[k, 0] = m
        np.divide(x, np.float32(255), out=x)
        for k in np.flatnonzero(self.fill_rows[np.asarray(rows, dtype=np.int64)]):
            if self.fill_value is None:
                raise RuntimeError("plant: a validation or test image decoded before the training mean is known")
            x[k] = np.where(mask[k, 0] != 0, self.fill_value[:, None, None], x[k])
        if self.plant_norm is not None:
            np.subtract(x, np.array(self.plant_norm[0], dtype=np.float32).reshape(1, -1, 1, 1), out=x)
            np.divide(x, np.array(self.plant_norm[1], dtype=np.float32).reshape(1, -1, 1, 1), out=x)


def channel_mean(sums: np.ndarray, pixels: int) -> np.ndarray:
    """float32 (3,) per-channel mean in [0, 1] from the uint8 pixel sums of ``pixels`` pixels per channel."""
    return (np.asarray(sums, dtype=np.float64) / pixels / 255).astype(np.float32)


def _train_sums(decoder: PlantDecoder, train: np.ndarray, cache: ExampleCache | None) -> np.ndarray:
    """The per-channel sums of the training images, one decoding pass (kept in ``cache`` if given)."""
    (h, w) = decoder.size

    def build():
        sums = np.zeros(3, dtype=np.int64)
        x = np.empty((CHUNK, 3, h, w), dtype=np.float32)
        mask = np.empty((CHUNK, 1, h, w), dtype=np.float32)
        for start in range(0, len(train), CHUNK):
            rows = train[start:start + CHUNK]
            decoder.decode_into(rows, x[:len(rows)], mask[:len(rows)], sums=sums)
        return sums.astype("<i8").view(np.uint8)

    keys = [decoder._key(int(j)) for j in train] if cache is not None else [None]
    if any(k is None for k in keys):
        return build().view("<i8").astype(np.int64)
    return cache.get(ExampleCache.key("plant-train-sums", keys), 24, build).view("<i8").astype(np.int64)


@register_path_dataset("plant", default_model="cnn", default_epochs=10, default_batch_size=32)
@one_line_errors
def load_plant(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """Heo et al.'s plant images under ``path`` (see the module docstring) as train / val / test splits,
    masks marking the background; val and test backgrounds filled with the training mean."""
    root = Path(path)
    source = f"plant:{path}"
    opts = parse_options(source, options, DEFAULTS)
    fold = count_option(source, "fold", opts["fold"], 0, 10**6)
    size = _parse_size(source, opts["size"])
    if size is None:
        raise UserError(f"{source}: option size must be N or H,W (positive integers), got None")
    norm = _parse_normalize(source, opts["normalize"], 3)
    val_f = option_fraction(source, "val_fraction", opts["val_fraction"])
    split_seed = count_option(source, "split_seed", opts["split_seed"], 0, 2**63 - 1)
    stream, workers, cache = stream_options(source, opts)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory" if not root.exists() else f"{root}: not a directory")
    data_dir, lists = root / "rgb_data", root / "rgb_dataset_splits"
    for folder in (data_dir, lists):
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder (expected the plant layout of {HEO})")
    seen: dict = {}
    parts = {}
    for name in ("train", "test", "val"):
        list_path = lists / f"{name}_{fold}.txt"
        if name == "val" and not os.path.lexists(list_path):
            continue
        parts[name] = read_list(list_path, data_dir, seen)
        if not parts[name]:
            raise DataError(f"{list_path}: no entries")
    entries = [e for name in ("train", "test", "val") for e in parts.get(name, [])]
    split = np.array([SPLIT_NAMES.index(name) for name in ("train", "test", "val") for _ in parts.get(name, [])])
    y = np.array([label for _, _, label, _ in entries], dtype=np.int64)
    if "val" in parts:
        how = f"fold {fold}: train_{fold}.txt, val_{fold}.txt, test_{fold}.txt"
    else:
        assign = np.where(split == 0, -1, split)
        split = stratified_split(y, np.random.default_rng(split_seed), val_f, 0.0, assign)
        how = (f"fold {fold}: train_{fold}.txt and test_{fold}.txt; {val_f:g} of each train class drawn as val by "
               f"numpy default_rng({split_seed})")
    for i, name in enumerate(SPLIT_NAMES):
        if not (split == i).any():
            raise DataError(f"{lists}: the {name} split of fold {fold} is empty"
                            + (f"; raise val_fraction or add val_{fold}.txt" if name == "val" else ""))

    pickle_path = root / MASK_FILE
    masks = load_masks(pickle_path)
    pickle_real = os.path.realpath(pickle_path)
    st = os.stat(pickle_real)
    (h, w) = size
    packed, shapes, examples = [], [], []
    for image, stem, _, where in entries:
        plant = _plant_mask(masks, stem, pickle_path)
        shapes.append(plant.shape)
        ignore = ~_resize(plant.astype(np.uint8), size, nearest=True).astype(bool)
        packed.append(np.packbits(ignore.reshape(-1)))
        real = os.path.realpath(image)
        if stream:
            open_regular(real, "image file", f"{image} ({where})")[0].close()
        examples.append((real, f"{image} ({where})", stem, str(pickle_path)))
    del masks
    group = y.copy()
    has_mask = np.ones(len(y), dtype=bool)
    decoder = PlantDecoder(examples, size, norm, packed, shapes, [pickle_real, st.st_size, st.st_mtime_ns],
                           split != 0, None if cache is None else ExampleCache(cache))
    low, high = _input_range(norm)
    counts = {s: {c: int(((split == i) & (y == k)).sum()) for k, c in enumerate(CLASSES)}
              for i, s in enumerate(SPLIT_NAMES)}
    info = {"dataset": "plant", "path": str(root), "fold": fold, "classes": CLASSES, "groups": CLASSES,
            "group_counts": counts, "split": how, "split_seed": split_seed, "seed": seed,
            "annotated": int(has_mask.sum()), "image_size": list(size), "channels": 3,
            "normalize": opts["normalize"], "input_range": [low, high], "stream": stream,
            "sources": {"layout": HEO, "labels": f"samples 1-3 of each day healthy ({HEO})",
                        "mask": f"background = pickle False ({HEO})", "groups": "the labels",
                        "val/test background": f"filled with the training mean per channel ({HEO})"}}
    train = np.flatnonzero(split == 0)
    pixels = len(train) * h * w
    if stream:
        if cache is not None:
            _make_cache_dir(source, cache)
        decoder.fill_value = channel_mean(_train_sums(decoder, train, decoder.cache), pixels)
        info["train_mean"] = decoder.fill_value.tolist()
        return _streaming_splits(root, source, cache, workers, decoder, y, group, has_mask, split, (low, high),
                                 {**info, "workers": workers, "cache": None if cache is None else str(cache)})
    common = dict(input_range=(low, high), num_classes=len(CLASSES), num_groups=len(CLASSES))
    sums = np.zeros(3, dtype=np.int64)
    out = {"train": memory_dataset(decoder, train, y, group, has_mask, name=f"{root.name}/train", sums=sums, **common)}
    decoder.fill_value = channel_mean(sums, pixels)
    info["train_mean"] = decoder.fill_value.tolist()
    for i, name in enumerate(SPLIT_NAMES[1:], 1):
        out[name] = memory_dataset(decoder, np.flatnonzero(split == i), y, group, has_mask, name=f"{root.name}/{name}",
                                   **common)
    info["sizes"] = {s: len(out[s]) for s in SPLIT_NAMES}
    return DataSplits(out["train"], out["val"], out["test"], info)
