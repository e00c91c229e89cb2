"""ISIC skin-lesion images with their coloured patches marked: ``load_dataset("isic:PATH", **options)``
(CLI: ``--data isic:PATH``). The files are the ones the papers' authors published; download them yourself.

In this data the coloured patches (stickers) appear only on benign lesions, so a model can tell benign
from malignant by the patch. Two published layouts of PATH are read (option ``layout``; by default
``heo`` if ``processed/patch_no_cancer_again`` exists, else ``rieger``)::

    rieger (Rieger et al., CDEP, ICML 2020)       heo (Heo et al., NeurIPS 2023, robust_mlx)
    processed/no_cancer/*.jpg   benign            processed/no_cancer/             benign, no patch
    processed/cancer/*.jpg      malignant         processed/patch_no_cancer_again/ benign with a patch
    segmentation/<name>         patch masks of    processed/cancer/                malignant
                                benign images     segmentation/<name>              patch masks of the
                                that have one                                      patch_no_cancer_again images

A folder's images are its files with an image suffix (.jpg, .jpeg, .png, .bmp, .gif, .tif, .tiff,
.webp, any case), in sorted order (Python's string order of the file names); hidden files, subfolders
and other files are skipped (counted in ``info["skipped_files"]``). A segmentation belongs to the
image of the same file name.

- Labels: 0 = benign, 1 = malignant. Groups: 0 = benign without a patch, 1 = benign with a patch,
  2 = malignant (Heo et al.'s groups; in the rieger layout a benign image is in group 1 when it has
  a segmentation, as CDEP decides).
- Masks (1 = ignore): a segmentation pixel is patch when its channel 0 is > 100 (both papers' rule);
  with ``dilate=N`` the patch is grown by an N x N square first (CDEP dilates by 20 x 20 with
  ``skimage.morphology.dilation``; a pixel at (r, c) then covers rows r - N//2 .. r + (N-1)//2 and the
  same columns, clipped at the border, skimage's placement for even N). Dilation runs at the
  segmentation's resolution, before resizing. Images without a segmentation have an empty mask and
  are annotated all the same (``has_mask`` True): no patch is the annotation "no shortcut here".
- Splits (fixed by the paper, not by ``seed``): the examples are ordered as group 0, 1, 2 (rieger:
  no_cancer, then cancer), each folder's names sorted. heo: ``numpy.random.default_rng(split_seed)``
  (default 42) ``.permutation(N)``; its first int(0.75 N) are train, the next int(0.1 N) val, the rest
  test (robust_mlx's rule). rieger: CDEP's ``torch.manual_seed(0); random_split`` into int(0.8 N) train,
  N - int(0.8 N) - int(0.1 N) test and int(0.1 N) val, in that order, as
  ``torch.randperm(N, generator=torch.Generator().manual_seed(split_seed))`` (default 0). CDEP listed
  the files in ``os.listdir`` order, which no file system promises; here names are sorted. Within a
  split, examples keep the order above.

Options: ``size`` (``N`` or ``"H,W"``, default 299: the processed images' size, at which both papers
train; images resized bilinearly, masks by nearest neighbour), ``normalize`` (as ``folder:``: ``none``,
the default, ``imagenet`` or ``"MEAN,STD"``), ``dilate`` (default 0 = none), ``layout``, ``split_seed``,
``stream`` / ``workers`` / ``cache`` (as ``folder:``: decode per batch, in N processes, through an
on-disk cache). Errors are one-line DataErrors naming the file or folder: a missing folder, a folder
without images, a segmentation without its image (or of a malignant image), a patch image without its
segmentation, an unreadable image.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, UserError
from .csv_common import SPLIT_NAMES, one_line_errors, open_regular, option_bool, parse_options
from .dataset import DataSplits, ExplanationDataset
from .folder import _cache_dir, _parse_normalize, _parse_size, _parse_workers, _streaming_splits
from .image_files import FolderDecoder, _fit, _input_range, read_image
from .registry import register_path_dataset
from .streaming import ExampleCache

RIEGER = "Rieger et al., Interpretations are useful: penalizing explanations to align neural networks with prior " \
         "knowledge (CDEP), ICML 2020"
HEO = "Heo et al., Use perturbations when learning from explanations, NeurIPS 2023"
LAYOUTS = ("rieger", "heo")
#: a segmentation pixel is patch when its channel 0 is above this (CDEP and robust_mlx)
PATCH_THRESHOLD = 100
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CLASSES = ["benign", "malignant"]
GROUPS = ["benign/no patch", "benign/patch", "malignant"]
DEFAULT_SIZE = 299
#: the largest dilation square (a typo beyond this)
MAX_DILATE = 1024
#: examples decoded at once when a split is built in memory
CHUNK = 64
DEFAULTS = {"layout": None, "size": DEFAULT_SIZE, "normalize": "none", "dilate": 0, "split_seed": None,
            "stream": False, "workers": 0, "cache": None}
#: folders of each layout: (folder under PATH, label, group, has segmentations)
FOLDERS = {
    "rieger": (("processed/no_cancer", 0, 0, True), ("processed/cancer", 1, 2, False)),
    "heo": (("processed/no_cancer", 0, 0, False), ("processed/patch_no_cancer_again", 0, 1, True),
            ("processed/cancer", 1, 2, False)),
}


def list_images(folder: Path, what: str) -> tuple[list[str], int]:
    """The sorted names of the image files in ``folder`` (by suffix; hidden files and subfolders skipped)
    and how many other entries were skipped. A missing folder is a DataError naming it and ``what``."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder ({what})" if not folder.exists()
                        else f"{folder}: not a folder ({what})")
    names, skipped = [], 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and not entry.is_dir():
                    names.append(entry.name)
                else:
                    skipped += 1
    except OSError as exc:
        raise DataError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None
    return sorted(names), skipped


def dilate(mask: np.ndarray, n: int) -> np.ndarray:
    """``mask`` (bool (H, W)) grown by an n x n square: a pixel at (r, c) covers rows r - n//2 ..
    r + (n-1)//2 and those columns, clipped at the border (``skimage.morphology.dilation(mask,
    square(n))``, as CDEP dilates its patch masks with n = 20). n <= 1: unchanged."""
    if n <= 1:
        return mask
    out = mask
    before, after = n // 2, (n - 1) // 2  # pixel r reaches r - before .. r + after
    for axis in (0, 1):
        length = out.shape[axis]
        counts = np.cumsum(out, axis=axis, dtype=np.int32)
        counts = np.concatenate([np.zeros_like(np.take(counts, [0], axis=axis)), counts], axis=axis)
        idx = np.arange(length)
        hi = np.minimum(idx + before, length - 1) + 1  # output x gathers inputs x - after .. x + before
        lo = np.maximum(idx - after, 0)
        out = (np.take(counts, hi, axis=axis) - np.take(counts, lo, axis=axis)) > 0
    return out


def patch_mask(seg: np.ndarray, where: str, image_hw, n: int) -> np.ndarray:
    """The bool patch mask (1 = ignore) of a uint8 RGB segmentation: channel 0 > PATCH_THRESHOLD, dilated
    by an n x n square; it must have the size of its image."""
    if seg.shape[:2] != tuple(image_hw):
        raise DataError(f"{where}: segmentation is {seg.shape[0]}x{seg.shape[1]} but its image is "
                        f"{image_hw[0]}x{image_hw[1]}")
    return dilate(seg[..., 0] > PATCH_THRESHOLD, n)


class IsicDecoder(FolderDecoder):
    """Decodes ISIC examples (image, segmentation or none) with image_files.py's reading, resizing, normalisation
    and cache; the mask is :func:`patch_mask` of the segmentation (dilated by ``dilate``)."""

    def __init__(self, examples, size, norm, dilate_by: int, cache: ExampleCache | None):
        super().__init__(examples, "RGB", 3, size, norm, {"mask_threshold": None, "mask_invert": False}, cache)
        self.dilate = dilate_by

    def _read(self, j: int):
        image, where, seg, seg_where = self.examples[j]
        img = read_image(Path(image), where, "RGB", resolved=True)
        if seg:
            m = patch_mask(read_image(Path(seg), seg_where, "RGB", resolved=True), seg_where, img.shape[:2],
                           self.dilate)
        else:
            m = np.zeros(img.shape[:2], dtype=bool)
        return _fit(img, m, self.size)

    def _key(self, j: int):
        base = super()._key(j)
        return None if base is None else ExampleCache.key(base, "isic", PATCH_THRESHOLD, self.dilate)


def memory_dataset(decoder, idx: np.ndarray, y, group, has_mask, *, name: str, input_range, num_classes: int,
                   num_groups: int, **decode_options) -> ExplanationDataset:
    """The examples ``idx`` of ``decoder`` decoded now (CHUNK at a time, through ``decoder.decode_into``, so
    the tensors equal a streaming dataset's batches) as an :class:`ExplanationDataset`."""
    c, (h, w) = decoder.channels, decoder.size
    x = np.empty((len(idx), c, h, w), dtype=np.float32)
    mask = np.empty((len(idx), 1, h, w), dtype=bool)
    buf = np.empty((CHUNK, 1, h, w), dtype=np.float32)
    for start in range(0, len(idx), CHUNK):
        rows = idx[start:start + CHUNK]
        decoder.decode_into(rows, x[start:start + len(rows)], buf[:len(rows)], **decode_options)
        mask[start:start + len(rows)] = buf[:len(rows)] != 0
    return ExplanationDataset(
        torch.from_numpy(x), torch.as_tensor(y[idx]), torch.from_numpy(np.ascontiguousarray(np.broadcast_to(
            mask, x.shape))), torch.as_tensor(group[idx]), torch.as_tensor(has_mask[idx]),
        num_classes=num_classes, num_groups=num_groups, name=name, input_range=input_range)


def count_option(source: str, key: str, value, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise UserError(f"{source}: option {key} must be an integer in {low}..{high}, got {value!r}")
    return int(value)


def stream_options(source: str, opts: dict):
    """``(stream, workers, cache)`` checked as ``folder:`` checks them (workers and cache need stream)."""
    stream = option_bool(source, "stream", opts["stream"])
    workers = _parse_workers(source, opts["workers"])
    cache = _cache_dir(source, opts["cache"]) if opts["cache"] is not None else None
    for option, given in (("workers", workers != 0), ("cache", cache is not None)):
        if given and not stream:
            raise UserError(f"{source}: option {option} needs stream=true")
    return stream, workers, cache


def _split(layout: str, n: int, seed: int) -> np.ndarray:
    """The split (0 train, 1 val, 2 test) of each of ``n`` examples by the layout's paper."""
    split = np.empty(n, dtype=np.int64)
    if layout == "heo":
        perm = np.random.default_rng(seed).permutation(n)
        n_train, n_val = int(0.75 * n), int(0.1 * n)
        split[perm[:n_train]], split[perm[n_train:n_train + n_val]], split[perm[n_train + n_val:]] = 0, 1, 2
    else:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
        n_train, n_val = int(0.8 * n), int(0.1 * n)
        n_test = n - n_train - n_val
        split[perm[:n_train]], split[perm[n_train:n_train + n_test]], split[perm[n_train + n_test:]] = 0, 2, 1
    return split


SPLIT_RULES = {
    "heo": f"numpy default_rng(split_seed).permutation of the sorted file list: 0.75 train, 0.1 val, rest test ({HEO})",
    "rieger": f"torch.randperm(N, manual_seed(split_seed)) as random_split: 0.8 train, rest test, 0.1 val ({RIEGER})",
}


@register_path_dataset("isic", default_model="cnn", default_epochs=10, default_batch_size=32)
@one_line_errors
def load_isic(path: str | Path, seed: int = 0, **options) -> DataSplits:
    """The ISIC images under ``path`` in Rieger et al.'s or Heo et al.'s layout (see the module docstring)
    as train / val / test splits, masks marking the patches."""
    root = Path(path)
    source = f"isic:{path}"
    opts = parse_options(source, options, DEFAULTS)
    size = _parse_size(source, opts["size"])
    if size is None:
        raise UserError(f"{source}: option size must be N or H,W (positive integers), got None")
    norm = _parse_normalize(source, opts["normalize"], 3)
    dilate_by = count_option(source, "dilate", opts["dilate"], 0, MAX_DILATE)
    layout = opts["layout"]
    if layout not in (None, "auto", *LAYOUTS):
        raise UserError(f"{source}: option layout must be auto, rieger or heo, got {layout!r}")
    stream, workers, cache = stream_options(source, opts)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory" if not root.exists() else f"{root}: not a directory")
    if layout in (None, "auto"):
        layout = "heo" if (root / "processed" / "patch_no_cancer_again").is_dir() else "rieger"
    split_seed = opts["split_seed"]
    split_seed = (42 if layout == "heo" else 0) if split_seed is None else \
        count_option(source, "split_seed", split_seed, 0, 2**63 - 1)

    paper = HEO if layout == "heo" else RIEGER
    seg_dir = root / "segmentation"
    seg_names, skipped = list_images(seg_dir, f"the patch masks of the {layout} layout ({paper})")
    folders = []
    for sub, label, group, has_segs in FOLDERS[layout]:
        folder = root / sub
        names, more = list_images(folder, f"{CLASSES[label]} images of the {layout} layout ({paper})")
        if not names:
            raise DataError(f"{folder}: no images (expected {', '.join(IMAGE_SUFFIXES[:2])}, ... files of "
                            f"{GROUPS[group]} lesions)")
        skipped += more
        folders.append((folder, names, label, group, has_segs))
    seg_set = set(seg_names)
    with_segs = [f for f in folders if f[4]]  # the one folder whose images the segmentations mark
    target, target_names = with_segs[0][0], set(with_segs[0][1])
    malignant = set(folders[-1][1])
    for name in seg_names:
        if name not in target_names:
            if name in malignant:
                raise DataError(f"{seg_dir / name}: a segmentation of the malignant image "
                                f"{folders[-1][0] / name}; patches are annotated on benign images only")
            raise DataError(f"{seg_dir / name}: no matching image {target / name}")
    if layout == "heo":
        for name in with_segs[0][1]:
            if name not in seg_set:
                raise DataError(f"{target / name}: no segmentation {seg_dir / name} (every image in "
                                f"{target.name} has a patch mask)")
    both = sorted(set(folders[0][1]) & set(folders[1][1])) if layout == "heo" else []
    if both:
        warnings.warn(f"{source}: {len(both)} image name(s) (e.g. {both[0]}) are both in {folders[0][0].name} and "
                      f"{folders[1][0].name}; both copies are kept, as robust_mlx does", UserWarning, stacklevel=3)

    examples, y, group = [], [], []
    for folder, names, label, grp, has_segs in folders:
        for name in names:
            seg = has_segs and name in seg_set
            image_real = os.path.realpath(folder / name)
            seg_real = os.path.realpath(seg_dir / name) if seg else ""
            if stream:  # opened now (cheap), decoded per batch
                open_regular(image_real, "image file", str(folder / name))[0].close()
                if seg:
                    open_regular(seg_real, "image file", str(seg_dir / name))[0].close()
            examples.append((image_real, str(folder / name), seg_real, str(seg_dir / name) if seg else ""))
            y.append(label)
            group.append(1 if grp == 0 and seg else grp)
    y, group = np.array(y, dtype=np.int64), np.array(group, dtype=np.int64)
    has_mask = np.ones(len(y), dtype=bool)
    split = _split(layout, len(y), split_seed)
    for i, name in enumerate(SPLIT_NAMES):
        if not (split == i).any():
            raise DataError(f"{root}: the {name} split is empty ({len(y)} images are too few)")
    low, high = _input_range(norm)
    counts = {s: {g: int(((split == i) & (group == k)).sum()) for k, g in enumerate(GROUPS)}
              for i, s in enumerate(SPLIT_NAMES)}
    info = {"dataset": "isic", "path": str(root), "layout": layout, "classes": CLASSES, "groups": GROUPS,
            "group_counts": counts, "split": SPLIT_RULES[layout], "split_seed": split_seed, "seed": seed,
            "annotated": int(has_mask.sum()), "with_patch": int((group == 1).sum()), "skipped_files": skipped,
            "image_size": list(size), "channels": 3, "normalize": opts["normalize"], "input_range": [low, high],
            "dilate": dilate_by, "patch_threshold": PATCH_THRESHOLD, "stream": stream,
            "sources": {"layout": paper, "groups": HEO, "split": paper, "dilation": f"{RIEGER} (20 x 20 there)",
                        "patch mask": f"channel 0 > {PATCH_THRESHOLD} ({RIEGER}; {HEO})"}}
    decoder = IsicDecoder(examples, size, norm, dilate_by, None if cache is None else ExampleCache(cache))
    if stream:
        return _streaming_splits(root, source, cache, workers, decoder, y, group, has_mask, split, (low, high),
                                 {**info, "workers": workers, "cache": None if cache is None else str(cache)})
    out = {name: memory_dataset(decoder, np.flatnonzero(split == i), y, group, has_mask, name=f"{root.name}/{name}",
                                input_range=(low, high), num_classes=len(CLASSES), num_groups=len(GROUPS))
           for i, name in enumerate(SPLIT_NAMES)}
    info["sizes"] = {s: len(out[s]) for s in SPLIT_NAMES}
    return DataSplits(out["train"], out["val"], out["test"], info)
