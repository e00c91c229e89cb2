"""Miniature replicas of the published on-disk layouts of ISIC (Rieger et al.'s CDEP layout and Heo et al.'s
robust_mlx layout) and of Heo et al.'s plant data, in a temporary folder, with what was put where.

ISIC images are flat-coloured JPEGs whose red channel encodes an id (``R = 20 + 8 * id``, read back by
:func:`isic_ids`); patch images carry a coloured block, and their segmentation (PNG bytes under the image's
.jpg name, so the masks are exact) marks it with channel 0 > 100, next to a decoy pixel whose channel 0
is exactly 100 (not patch). Plant images are JPEGs whose plant region is a rectangle that differs per
image, so the mask of an example tells which image it is.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ISIC_SIZE = (20, 24)  # (H, W): not square, so a swapped height and width shows
PATCH_AT = (10, 12)  # top-left corner of the patch block (away from the top-left 8x8 JPEG block)
DECOY_AT = (2, 20)  # channel 0 == 100 there: not patch
PLANT_SIZE = (12, 16)


def encode(array: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format=fmt, **kw)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------- ISIC


@dataclass
class IsicReplica:
    root: Path
    layout: str
    #: per id: (folder under root, file name, label, group)
    items: dict = field(default_factory=dict)
    #: per id of a patch image: the expected bool (H, W) mask
    masks: dict = field(default_factory=dict)
    #: the ids in the order the loader is documented to list them (group/folder order, sorted names)
    order: list = field(default_factory=list)


def write_isic(root: Path, layout: str = "rieger", n_clean: int = 5, n_patch: int = 4, n_malignant: int = 5,
               patch: tuple[int, int] = (3, 4), size=ISIC_SIZE) -> IsicReplica:
    """The layout with ``n_clean`` benign images without a patch, ``n_patch`` with one (a ``patch`` block at
    PATCH_AT, marked in segmentation/) and ``n_malignant`` malignant ones."""
    rep = IsicReplica(root, layout)
    benign = "processed/no_cancer"
    patched = "processed/patch_no_cancer_again" if layout == "heo" else benign
    kinds = [(benign, 0, 0)] * n_clean + [(patched, 0, 1)] * n_patch + [("processed/cancer", 1, 2)] * n_malignant
    for folder in {benign, patched, "processed/cancer", "segmentation"}:
        (root / folder).mkdir(parents=True, exist_ok=True)
    numbers = np.random.default_rng(7).permutation(len(kinds)) * 37 + 11  # names not in id order
    h, w = size
    for i, (folder, label, group) in enumerate(kinds):
        name = f"ISIC_{numbers[i]:07d}.jpg"
        img = np.empty((h, w, 3), dtype=np.uint8)
        img[...] = (20 + 8 * i, 60 + 60 * group, 128)
        if group == 1:
            r, c = PATCH_AT
            img[r:r + patch[0], c:c + patch[1]] = (0, 200, 255)
            seg = np.zeros((h, w, 3), dtype=np.uint8)
            seg[r:r + patch[0], c:c + patch[1]] = (255, 255, 255)
            seg[r, c] = (101, 0, 0)  # channel 0 just above 100: patch
            seg[DECOY_AT] = (100, 255, 255)  # channel 0 not above 100: not patch, whatever the others say
            (root / "segmentation" / name).write_bytes(encode(seg))  # PNG bytes under the .jpg name
            m = np.zeros((h, w), dtype=bool)
            m[r:r + patch[0], c:c + patch[1]] = True
            rep.masks[i] = m
        (root / folder / name).write_bytes(encode(img, "JPEG", quality=95, subsampling=0))
        rep.items[i] = (folder, name, label, group)
    (root / "processed" / "cancer" / "notes.txt").write_text("not an image: skipped")
    folders = [benign, "processed/cancer"] if layout == "rieger" else [benign, patched, "processed/cancer"]
    for folder in folders:
        rep.order += sorted((i for i, it in rep.items.items() if it[0] == folder), key=lambda i: rep.items[i][1])
    return rep


def isic_ids(x) -> list[int]:
    """The id of each (un-normalised, [0, 1]) ISIC replica image in ``x`` (N, 3, H, W), from its red channel."""
    red = np.asarray(x[:, 0, :4, :4]).reshape(len(x), -1).mean(1) * 255
    return [int(round((v - 20) / 8)) for v in red]


# ---------------------------------------------------------------------------------------------------- plant


@dataclass
class PlantReplica:
    root: Path
    #: stem -> bool (H, W) plant mask (True = plant), as pickled
    plant: dict = field(default_factory=dict)
    #: stem -> image path
    images: dict = field(default_factory=dict)
    train: list = field(default_factory=list)
    test: list = field(default_factory=list)
    val: list = field(default_factory=list)

    def label(self, stem: str) -> int:
        return 0 if int(stem.split("_")[1][1:]) <= 3 else 1

    def stem_of_mask(self, ignore) -> str:
        """The stem whose background (~plant) is ``ignore`` (bool (H, W))."""
        found = [s for s, p in self.plant.items() if np.array_equal(~p, np.asarray(ignore))]
        assert len(found) == 1, found
        return found[0]


def plant_rectangle(i: int, size=PLANT_SIZE) -> np.ndarray:
    """The plant mask of image ``i`` (0..15): a rectangle whose corner (1 + i % 4, 1 + i // 4) is unique."""
    m = np.zeros(size, dtype=bool)
    top, left = 1 + i % 4, 1 + i // 4
    m[top:top + 6, left:left + 8] = True
    return m


def write_plant(root: Path, days=(1, 2), samples=range(1, 9), protocol: int = 4, val_list: bool = False,
                size=PLANT_SIZE) -> PlantReplica:
    """``rgb_data/<day>/<day>_Z<sample>_0.JPEG`` for each day and sample, the split lists of fold 0 (every
    4th image in test; entries as stems or as paths relative to rgb_data, with blank lines and stray spaces)
    and the mask pickle (with one extra, unlisted stem, as other folds' masks would be)."""
    rep = PlantReplica(root)
    rng = np.random.default_rng(3)
    i = 0
    for day in days:
        (root / "rgb_data" / str(day)).mkdir(parents=True, exist_ok=True)
        for s in samples:
            stem = f"{day}_Z{s}_0"
            plant = plant_rectangle(i, size)
            img = rng.integers(90, 140, (*size, 3))
            img[..., 0] = np.where(plant, 40 + 3 * i, img[..., 0])
            img[..., 1] = np.where(plant, 170, img[..., 1])
            path = root / "rgb_data" / str(day) / f"{stem}.JPEG"
            path.write_bytes(encode(img, "JPEG", quality=90))
            rep.plant[stem], rep.images[stem] = plant, path
            (rep.test if i % 4 == 3 else rep.train).append(stem)
            i += 1
    lists = root / "rgb_dataset_splits"
    lists.mkdir(parents=True, exist_ok=True)

    def line(k, stem):
        return stem if k % 2 == 0 else f"  {stem.split('_')[0]}/{stem}.JPEG "  # a stem or a relative path

    if val_list:
        val, rep.train = rep.train[:3], rep.train[3:]
        (lists / "val_0.txt").write_text("\n".join(val) + "\n")
        rep.val = val
    (lists / "train_0.txt").write_text("\n".join(line(k, s) for k, s in enumerate(rep.train)) + "\n\n")
    (lists / "test_0.txt").write_text("\r\n".join(line(k, s) for k, s in enumerate(rep.test)))
    write_masks(root, {**rep.plant, "9_Z1_9": np.zeros(size, dtype=bool)}, protocol)
    return rep


def write_masks(root: Path, masks: dict, protocol: int = 4) -> Path:
    path = root / "mask" / "preprocessed_masks.pyu"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(masks, protocol=protocol))
    return path
