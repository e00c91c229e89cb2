"""A tiny generated image folder to try ``--data folder:DIR`` on: ``rightreasons data example patches``.

"patches" imitates the ISIC skin-lesion shortcut: RGB photos of a lesion on skin, benign (round,
evenly coloured) or malignant (irregular border, mottled), where a coloured sticker appears on
``patch_rate`` (80%) of benign training and validation images and on no malignant one, so in training
"sticker => benign" is a perfect shortcut. In the test split the sticker appears on half of all
images of either class, so a model relying on it misclassifies stickered malignant lesions. Masks mark
the sticker (dilated by one pixel); images without a sticker have an all-black mask; a tenth of the
stickered training images have no mask at all (partial annotation). Groups are
``<label>/patch`` and ``<label>/clean``. The output is deterministic for a given seed::

    DIR/labels.csv            file,label,group,split,mask
    DIR/images/0000.png ...   RGB, size x size
    DIR/masks/0000.png ...    grayscale, white = the sticker (ignore)
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UserError

STICKER_COLOURS = np.array([(40, 90, 220), (60, 180, 80), (230, 200, 40)], dtype=np.float64)


def lesion_image(rng: np.random.Generator, size: int, malignant: bool, patch: bool, strength: float = 1.0):
    """(image uint8 (size, size, 3), sticker mask bool (size, size)): a lesion on skin, with a sticker if
    ``patch``. ``strength`` in [0, 1] scales how much a malignant lesion differs from a benign one
    (irregular border, darker, mottled); 1 is the "patches" example's."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    skin = np.array([220.0, 170.0, 140.0]) + rng.uniform(-20, 20, 3)
    img = np.broadcast_to(skin, (size, size, 3)).copy()
    cy, cx = 0.5 + rng.uniform(-0.08, 0.08, 2)
    dist = np.hypot(yy - cy, xx - cx)
    theta = np.arctan2(yy - cy, xx - cx)
    r0 = rng.uniform(0.15, 0.23)
    benign_colour = np.array([150.0, 95.0, 65.0])
    if malignant:
        bumps = sum(strength * rng.uniform(0.05, 0.14) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
                    for k in (3, 4, 5, 7))
        colour = benign_colour + strength * (np.array([125.0, 75.0, 50.0]) - benign_colour)
    else:
        bumps = 0.04 * np.cos(2 * theta + rng.uniform(0, 2 * np.pi))
        colour = benign_colour
    colour = colour + rng.uniform(-25, 25) + rng.uniform(-8, 8, 3)
    alpha = np.clip((r0 * (1 + bumps) - dist) * size / 1.5, 0, 1)[..., None]
    lesion = np.broadcast_to(colour, img.shape).copy()
    if malignant:  # mottled: low-frequency blotches
        coarse = rng.uniform(-1, 1, (4, 4))
        blotch = np.kron(coarse, np.ones((size // 4 + 1, size // 4 + 1)))[:size, :size]
        lesion *= (1 + 0.18 * strength * blotch)[..., None]
    img = img * (1 - alpha) + lesion * alpha
    sticker = draw_sticker(rng, img, yy, xx, size) if patch else np.zeros((size, size), dtype=bool)
    img = img + rng.normal(0, 5, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), sticker


def draw_sticker(rng: np.random.Generator, img: np.ndarray, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    """Paint a round coloured sticker near a corner of ``img`` (float (size, size, 3), in place); its mask
    (bool, one pixel of margin for resizing and edges)."""
    py = rng.choice([0.16, 0.84]) + rng.uniform(-0.04, 0.04)
    px = rng.choice([0.16, 0.84]) + rng.uniform(-0.04, 0.04)
    radius = rng.uniform(0.08, 0.11)
    d = np.hypot(yy - py, xx - px)
    img[d < radius] = STICKER_COLOURS[rng.integers(len(STICKER_COLOURS))]
    return d < radius + 1.5 / size


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def patches_rows(seed: int = 0, n_train: int = 240, n_val: int = 60, n_test: int = 120, size: int = 64,
                 patch_rate: float = 0.8, unannotated: float = 0.1):
    """Yield (name, image, mask or None, label, group, split) for every example (deterministic)."""
    rng = np.random.default_rng([seed, 7021])
    index = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        labels = rng.permutation(np.arange(n) % 2)
        for y in labels:
            malignant = bool(y)
            if split == "test":
                patch = bool(rng.random() < 0.5)
            else:
                patch = (not malignant) and bool(rng.random() < patch_rate)
            image, sticker = lesion_image(rng, size, malignant, patch)
            annotated = not (split == "train" and patch and rng.random() < unannotated)
            label = "malignant" if malignant else "benign"
            yield (f"{index:04d}", image, sticker if annotated else None, label,
                   f"{label}/{'patch' if patch else 'clean'}", split)
            index += 1


def example_out(out: str | Path, overwrite: bool) -> Path:
    """The directory an example is written to: ``out``, or the directory a symbolic link ``out`` points to;
    a file, or an existing non-empty directory without ``overwrite``, is refused."""
    out = Path(os.path.realpath(out)) if os.path.islink(out) else Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: already exists and is not empty; choose another --out or pass --overwrite")
    return out


def write_directory(out: str | Path, overwrite: bool, build) -> Path:
    """Run ``build(tmp)`` in a fresh directory beside ``out`` (see :func:`example_out`), then rename it to
    ``out``; an old ``out`` is moved aside first and removed after, and nothing is left on failure."""
    out = example_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        build(tmp)
        if out.exists():  # move it aside under a fresh name (an empty directory rename() may replace)
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_patches(out: str | Path, seed: int = 0, overwrite: bool = False, patch_rate: float = 0.8,
                  **sizes) -> Path:
    """Write the "patches" example folder to ``out`` (atomically: built beside it, then renamed).
    ``patch_rate``: the share of benign training and validation images with a sticker (the shortcut's
    strength). An existing non-empty ``out`` is refused unless ``overwrite``. A symbolic link ``out``
    stands for the directory it points to, which is written (the link itself is left as it is)."""
    example_out(out, overwrite)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"patches: seed must be a non-negative integer, got {seed!r}")
    if isinstance(patch_rate, bool) or not isinstance(patch_rate, (int, float)) or not 0 <= patch_rate <= 1:
        raise UserError(f"patches: patch_rate must be a number in [0, 1], got {patch_rate!r}")
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (8 if key == "size" else 2):
            raise UserError(f"patches: {key} must be an integer >= {8 if key == 'size' else 2}, got {value!r}")

    def build(tmp: Path) -> None:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["file", "label", "group", "split", "mask"])
        for name, image, mask, label, group, split in patches_rows(seed, patch_rate=patch_rate, **sizes):
            (tmp / "images" / f"{name}.png").write_bytes(_png(image))
            mask_name = ""
            if mask is not None:
                mask_name = f"masks/{name}.png"
                (tmp / mask_name).write_bytes(_png(mask.astype(np.uint8) * 255))
            writer.writerow([f"images/{name}.png", label, group, split, mask_name])
        (tmp / "labels.csv").write_text(table.getvalue())

    return write_directory(out, overwrite, build)


EXAMPLES = {"patches": write_patches}
