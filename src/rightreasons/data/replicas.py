"""Generated stand-ins for the published datasets, written in their real on-disk layouts with the papers'
shortcut planted: ``rightreasons data example isic|plant|cub --out DIR``, then ``--data isic:DIR`` (or
``plant:DIR``, ``cub:DIR``). Small, synthetic and deterministic for a given seed: for trying the loaders,
presets and audits without downloading anything, not for numbers about the real data.

- ``isic``: Heo et al.'s layout (``processed/no_cancer``, ``processed/patch_no_cancer_again``,
  ``processed/cancer``, ``segmentation/``). Lesions are drawn as in the ``patches`` example with a weak
  malignant look (``strength`` 0.35); ``patch_rate`` (80%) of the benign images carry a coloured sticker,
  no malignant one does, and each patch image has a segmentation (same file name, white = patch, so
  channel 0 > 100 marks it).
- ``plant``: ``rgb_data/<day>/<day>_Z<sample>_0.JPEG`` (samples 1-3 of a day healthy, 4-6 diseased),
  ``rgb_dataset_splits/{train,test}_0.txt`` and ``mask/preprocessed_masks.pyu`` (pickle of
  {stem: bool array}, True = plant). In the training list the soil tells the class (healthy: dark, fine
  grain; diseased: pale, blotchy); in the test list the soil is drawn independently of the class. The
  plant itself carries a weaker real signal (diseased leaves are a little yellower, with small brown spots).
- ``cub``: ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``, ``classes.txt``,
  ``bounding_boxes.txt``, ``parts/``, ``images/<class folder>/*.jpg`` and soft ``segmentations/``: a bird
  coloured by its class (``classes`` of CUB's first class folders) on a background drawn independently of
  the class. No shortcut is drawn: plant one with the loader's data option ``spurious=square``.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import UserError
from .examples import lesion_image, write_directory

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani",
               "005.Crested_Auklet", "006.Least_Auklet", "007.Parakeet_Auklet", "008.Rhinoceros_Auklet"]
#: CUB's parts/parts.txt, in its order
CUB_PARTS = ["back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
             "right eye", "right leg", "right wing", "tail", "throat"]
#: (body, head) colour of each class's bird
BIRD_COLOURS = [((70, 60, 55), (60, 55, 50)), ((235, 235, 230), (240, 240, 235)), ((90, 85, 95), (60, 60, 70)),
                ((25, 25, 30), (30, 30, 35)), ((110, 110, 120), (200, 120, 40)), ((150, 150, 150), (40, 40, 40)),
                ((95, 80, 70), (230, 230, 220)), ((120, 100, 80), (190, 170, 60))]
#: plant soils (mean RGB): healthy-looking, diseased-looking
SOILS = ((95.0, 70.0, 50.0), (150.0, 135.0, 115.0))


def _encode(array: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _jpeg(array: np.ndarray, quality: int = 95) -> bytes:
    return _encode(array, "JPEG", quality=quality, subsampling=0)


def _check(name: str, seed, n, size, min_n: int, **more) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"{name}: seed must be a non-negative integer, got {seed!r}")
    for key, value, low in (("n", n, min_n), ("size", size, 16), *((k, v, 2) for k, v in more.items())):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{name}: {key} must be an integer >= {low}, got {value!r}")


# ----------------------------------------------------------------------------------------------------- ISIC


def isic_rows(seed: int = 0, n: int = 600, size: int = 64, patch_rate: float = 0.8, malignant_rate: float = 0.5,
              strength: float = 0.35):
    """Yield (folder, file name, image uint8, patch mask bool or None) of every ISIC replica image."""
    rng = np.random.default_rng([seed, 4151])
    n_mal = max(1, round(n * malignant_rate))
    n_patch = max(1, round((n - n_mal) * patch_rate))
    kinds = rng.permutation(np.repeat([0, 1, 2], [n - n_mal - n_patch, n_patch, n_mal]))
    numbers = 24 + 7 * rng.permutation(n)
    for kind, number in zip(kinds, numbers):
        image, sticker = lesion_image(rng, size, kind == 2, kind == 1, strength)
        folder = ("processed/no_cancer", "processed/patch_no_cancer_again", "processed/cancer")[kind]
        yield folder, f"ISIC_{number:07d}.jpg", image, sticker if kind == 1 else None


def write_isic(out, seed: int = 0, n: int = 600, size: int = 64, overwrite: bool = False) -> Path:
    """Write the ISIC replica (Heo et al.'s layout) to ``out``; see the module docstring."""
    _check("isic", seed, n, size, 20)

    def build(tmp: Path):
        for sub in ("processed/no_cancer", "processed/patch_no_cancer_again", "processed/cancer", "segmentation"):
            (tmp / sub).mkdir(parents=True)
        for folder, name, image, sticker in isic_rows(seed, n, size):
            (tmp / folder / name).write_bytes(_jpeg(image))
            if sticker is not None:  # white patch on black, as a JPEG like the images
                seg = np.repeat(sticker[..., None].astype(np.uint8) * 255, 3, axis=2)
                (tmp / "segmentation" / name).write_bytes(_jpeg(seg, quality=100))

    return write_directory(out, overwrite, build)


# ---------------------------------------------------------------------------------------------------- plant


def plant_image(rng: np.random.Generator, size: int, diseased: bool, soil: int):
    """(image uint8 (size, size, 3), plant mask bool): a rosette of leaves on soil ``soil`` (0 fine dark,
    1 pale blotchy); a diseased plant is a little yellower and has small brown spots."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    if soil == 0:
        img = np.array(SOILS[0]) + rng.uniform(-10, 10) + rng.normal(0, 12, (size, size, 3))
    else:
        blocks = rng.uniform(-1, 1, (6, 6))
        blotch = np.kron(blocks, np.ones((size // 6 + 1, size // 6 + 1)))[:size, :size]
        img = np.array(SOILS[1]) + rng.uniform(-10, 10) + 22 * blotch[..., None] + rng.normal(0, 4, (size, size, 3))
    cy, cx = size * (0.5 + rng.uniform(-0.06, 0.06, 2))
    plant = np.zeros((size, size), dtype=bool)
    green = np.array([60.0, 140.0, 50.0]) + rng.uniform(-15, 15, 3)
    if diseased:
        green = green + np.array([22.0, 6.0, 0.0])
    start = rng.uniform(0, 2 * np.pi)
    leaves = int(rng.integers(5, 9))
    for k in range(leaves):
        angle = start + 2 * np.pi * k / leaves + rng.uniform(-0.2, 0.2)
        length, width = size * rng.uniform(0.18, 0.3), size * rng.uniform(0.06, 0.09)
        ly, lx = cy + np.sin(angle) * length * 0.6, cx + np.cos(angle) * length * 0.6
        u = (xx - lx) * np.cos(angle) + (yy - ly) * np.sin(angle)
        v = -(xx - lx) * np.sin(angle) + (yy - ly) * np.cos(angle)
        leaf = (u / (length * 0.6)) ** 2 + (v / width) ** 2 <= 1
        shade = green * rng.uniform(0.85, 1.1)
        img[leaf] = shade
        plant |= leaf
    if diseased:  # leaf spots: a few small brown discs on the plant
        where = np.argwhere(plant)
        for _ in range(int(rng.integers(3, 7))):
            py, px = where[rng.integers(len(where))] + 0.5
            spot = (np.hypot(yy - py, xx - px) <= max(1.0, size / 40)) & plant
            img[spot] = np.array([120.0, 90.0, 50.0]) + rng.uniform(-15, 15, 3)
    img[plant] += rng.normal(0, 6, (int(plant.sum()), 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), plant


def plant_rows(seed: int = 0, n: int = 480, size: int = 64, test_fraction: float = 0.25):
    """Yield (stem, split ("train" or "test"), image uint8, plant mask bool) of every plant replica image."""
    rng = np.random.default_rng([seed, 7523])
    diseased = np.arange(n) % 6 >= 3
    test = np.zeros(n, dtype=bool)
    for label in (False, True):  # stratified
        idx = np.flatnonzero(diseased == label)
        test[rng.permutation(idx)[:round(test_fraction * len(idx))]] = True
    for i in range(n):
        soil = int(rng.integers(2)) if test[i] else int(diseased[i])
        image, plant = plant_image(rng, size, bool(diseased[i]), soil)
        yield f"{i // 6 + 1}_Z{i % 6 + 1}_0", "test" if test[i] else "train", image, plant


def write_plant(out, seed: int = 0, n: int = 480, size: int = 64, overwrite: bool = False) -> Path:
    """Write the plant replica (Heo et al.'s layout) to ``out``; see the module docstring."""
    _check("plant", seed, n, size, 24)

    def build(tmp: Path):
        lists, masks = {"train": [], "test": []}, {}
        for stem, split, image, plant in plant_rows(seed, n, size):
            day = tmp / "rgb_data" / stem.split("_")[0]
            day.mkdir(parents=True, exist_ok=True)
            (day / f"{stem}.JPEG").write_bytes(_jpeg(image))
            lists[split].append(stem)
            masks[stem] = plant
        (tmp / "rgb_dataset_splits").mkdir()
        for split, stems in lists.items():
            (tmp / "rgb_dataset_splits" / f"{split}_0.txt").write_text("".join(s + "\n" for s in stems))
        (tmp / "mask").mkdir()
        (tmp / "mask" / "preprocessed_masks.pyu").write_bytes(pickle.dumps(masks, protocol=4))

    return write_directory(out, overwrite, build)


# ------------------------------------------------------------------------------------------------------ CUB


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float (size, size, 3): sky, water, foliage or sand, whatever the bird."""
    yy = (np.mgrid[0:size, 0:size][0] + 0.5) / size
    kind = int(rng.integers(4))
    top, bottom = [((120, 170, 230), (190, 215, 240)), ((40, 90, 120), (70, 130, 150)),
                   ((40, 90, 40), (80, 120, 50)), ((200, 180, 140), (170, 150, 110))][kind]
    img = np.array(top) + (np.array(bottom) - np.array(top)) * yy[..., None] + rng.uniform(-15, 15, 3)
    if kind in (2, 3):  # leaves or pebbles: blotches
        blocks = rng.uniform(-1, 1, (8, 8))
        img = img + 20 * np.kron(blocks, np.ones((size // 8 + 1, size // 8 + 1)))[:size, :size, None]
    elif kind == 1:  # waves
        img = img + 12 * np.sin(yy * size * rng.uniform(0.8, 1.4) + rng.uniform(0, 6.3))[..., None]
    return img


def bird_image(rng: np.random.Generator, size: int, cls: int):
    """(image uint8 (size, size, 3), soft segmentation uint8 (multiples of 51), box (x, y, w, h), parts
    {part id: (x, y)} of the visible parts): a bird of class ``cls`` (0-based) facing left or right."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    img = _background(rng, size)
    facing = 1 if rng.random() < 0.5 else -1
    s = size * rng.uniform(0.75, 1.0)
    cy, cx = size * (0.55 + rng.uniform(-0.08, 0.08)), size * (0.5 + rng.uniform(-0.08, 0.08))
    body_r = (0.17 * s, 0.26 * s)  # (half height, half width)
    hy, hx = cy - 0.17 * s, cx + facing * 0.22 * s
    head_r = 0.1 * s
    body = np.clip(1 - np.hypot((yy - cy) / body_r[0], (xx - cx) / body_r[1]), 0, None) * s / 3
    head = np.clip(head_r - np.hypot(yy - hy, xx - hx), 0, None) * 2
    bx = hx + facing * head_r
    beak = np.clip(0.06 * s - np.abs(yy - hy) - np.abs(xx - bx - facing * 0.04 * s), 0, None) * 2
    tx = cx - facing * body_r[1]
    tail = np.clip(0.07 * s - np.abs(yy - cy + 0.03 * s) - np.abs(xx - tx), 0, None) * 2
    body_c, head_c = (np.array(c, dtype=np.float64) + rng.uniform(-18, 18, 3) for c in BIRD_COLOURS[cls])
    for alpha, colour in ((tail, body_c * 0.8), (body, body_c), (head, head_c), (beak, np.array([200.0, 160, 60]))):
        a = np.clip(alpha, 0, 1)[..., None]
        img = img * (1 - a) + colour * a
    alpha = np.clip(np.maximum.reduce([body, head, beak, tail]), 0, 1)
    img = img + rng.normal(0, 4, img.shape)
    seg = (np.rint(alpha * 5) * 51).astype(np.uint8)
    rows, cols = np.nonzero(seg)
    box = (float(cols.min()), float(rows.min()), float(cols.max() - cols.min() + 1), float(rows.max() - rows.min() + 1))
    eye = 12 if facing == 1 else 7  # the eye facing the camera (right eye when facing right)
    wing = 13 if facing == 1 else 9
    points = {1: (cx - facing * 0.1 * s, cy - 0.12 * s), 2: (bx + facing * 0.05 * s, hy), 3: (cx, cy + 0.13 * s),
              4: (cx + facing * 0.15 * s, cy), 5: (hx, hy - 0.08 * s), 6: (hx + facing * 0.07 * s, hy - 0.05 * s),
              eye: (hx + facing * 0.04 * s, hy - 0.02 * s), 10: (hx - facing * 0.07 * s, hy - 0.04 * s),
              wing: (cx - facing * 0.03 * s, cy - 0.03 * s), 14: (tx, cy - 0.03 * s),
              15: (hx + facing * 0.03 * s, hy + 0.08 * s)}
    parts = {p: (min(max(x, 0.0), size - 1.0), min(max(y, 0.0), size - 1.0)) for p, (x, y) in points.items()}
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), seg, box, parts


def write_cub(out, seed: int = 0, n: int = 240, size: int = 64, overwrite: bool = False, classes: int = 4) -> Path:
    """Write the CUB_200_2011 replica (``classes`` classes, about half of each in test) to ``out``; see the
    module docstring."""
    _check("cub", seed, n, size, 8 * classes if isinstance(classes, int) else 8, classes=classes)
    if classes > len(CUB_CLASSES):
        raise UserError(f"cub: classes must be at most {len(CUB_CLASSES)}, got {classes}")

    def build(tmp: Path):
        rng = np.random.default_rng([seed, 2011])
        counts = np.bincount(np.arange(n) % classes, minlength=classes)
        lines = {k: [] for k in ("images", "labels", "split", "boxes", "parts")}
        image_id = 0
        for c, count in enumerate(counts):
            folder = CUB_CLASSES[c]
            train = rng.permutation(np.arange(count) < (count + 1) // 2)
            for k in range(count):
                image_id += 1
                rel = f"{folder}/{folder.split('.', 1)[1]}_{k + 1:04d}_{100 + 37 * image_id}.jpg"
                image, seg, box, parts = bird_image(rng, size, c)
                for sub, data in (("images", _jpeg(image)), ("segmentations", _encode(seg, "PNG"))):
                    path = tmp / sub / (rel if sub == "images" else rel[:-4] + ".png")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                lines["images"].append(f"{image_id} {rel}")
                lines["labels"].append(f"{image_id} {c + 1}")
                lines["split"].append(f"{image_id} {int(train[k])}")
                lines["boxes"].append(f"{image_id} " + " ".join(f"{v:.1f}" for v in box))
                lines["parts"] += [f"{image_id} {p} {parts[p][0]:.1f} {parts[p][1]:.1f} 1" if p in parts
                                   else f"{image_id} {p} 0.0 0.0 0" for p in range(1, len(CUB_PARTS) + 1)]
        files = {"images.txt": lines["images"], "image_class_labels.txt": lines["labels"],
                 "train_test_split.txt": lines["split"], "bounding_boxes.txt": lines["boxes"],
                 "classes.txt": [f"{c + 1} {CUB_CLASSES[c]}" for c in range(classes)],
                 "parts/parts.txt": [f"{p} {name}" for p, name in enumerate(CUB_PARTS, 1)],
                 "parts/part_locs.txt": lines["parts"]}
        (tmp / "parts").mkdir()
        for name, rows in files.items():
            (tmp / name).write_text("".join(row + "\n" for row in rows))

    return write_directory(out, overwrite, build)


#: name -> writer ``f(out, seed=, n=, size=, overwrite=)``, what ``rightreasons data example`` offers
REPLICAS = {"isic": write_isic, "plant": write_plant, "cub": write_cub}
