"""Decoy-MNIST benchmarks: a gray shade whose value encodes the label, which the mask marks as the shortcut.

Registered datasets (all ``(N, 1, 28, 28)`` float32 in [0, 1], masks bool of the same shape, groups = label):

- ``decoy-mnist`` (Ross, Hughes & Doshi-Velez 2017, "Right for the Right Reasons"): a 4x4 swatch in one of
  the four corners (chosen uniformly per image) with shade 255 - 25*y in train, 255 - 25*(random digit) in
  test; mask = the 16 swatch pixels.
- ``decoy-mnist-half`` (Heo et al. 2023, "Use Perturbations when Learning from Explanations"): the digit
  squeezed to 28 wide x 14 high (mean of each pair of adjacent rows) in the top or bottom half (chosen
  uniformly), the other half filled with 25*y in train, 25*(random digit) in test; mask = the filled half.
  (Heo's code resizes with PIL's default filter; the row-pair mean is the exact 2x box filter.)
- ``decoy-mnist-cdep`` (Rieger et al. 2020, "Interpretations are Useful", CDEP): a 5x5 patch in a corner
  chosen uniformly per image (as in CDEP's data script: row and column offsets each 0 or 23 at random),
  shade 255 - 25*y in train and 25*y in test (mapping reversed); mask = the 25 patch pixels.
  (CDEP's training penalised all four 5x5 corners; ``mask="corners"`` reproduces that.)
- ``mnist``: clean MNIST (the oracle), same splits, no annotations (has_mask False).

The images come from a loader (``load_mnist`` here; :mod:`.fashion_mnist` passes ``load_fashion_mnist`` to
the same :func:`build_decoy` / :func:`build_clean` for ``decoy-fmnist`` and ``fashion-mnist``).

Options: ``val`` = "train" (val decorated like train: shortcut correlated with the label) or
"decorrelated" (val shade digit drawn at random, like test; for CDEP with the train mapping 255 - 25*d);
``minority`` (fraction of train, and of a val="train" split, whose shade digit is redrawn at random, so about
0.9 * minority of them break the shortcut: the minority groups Group DRO needs; default 0, the papers' data);
``source`` (directory of IDX files, see :func:`load_mnist`); ``limit_train`` (keep the first N training
examples, a prefix of the full split); ``groups`` = "label" or "label_shade" (alias "label_shortcut":
group = 10*label + shade digit, for Group DRO; for CDEP's test split the shade digit is the label).
Heo et al.'s code drew the val shade at random (our ``val="decorrelated"``); Ross and CDEP had no val
split beyond a random part of train (our default).
Randomness comes from ``numpy.random.Generator`` streams seeded by (seed, dataset, split): the same seed
gives identical data; the global RNG is never touched.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import UserError
from .dataset import SPLITS, DataSplits, ExplanationDataset
from .mnist_source import load_mnist
from .registry import register_dataset

# ---------------------------------------------------------------------------------------------- helpers


def parse_options(dataset: str, options: dict, defaults: dict) -> dict:
    """Defaults updated with ``options``; unknown option names are a :class:`UserError`."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise UserError(f"{dataset}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(defaults))}")
    out = dict(defaults)
    out.update(options)
    return out


def check_choice(dataset: str, key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{dataset}: option {key}={value!r} is not one of {', '.join(map(repr, choices))}")


#: the largest count a dataset option takes (examples to generate, a limit): far beyond any real split
MAX_COUNT = 10_000_000


def check_count(dataset: str, key: str, value, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= MAX_COUNT:
        raise UserError(f"{dataset}: option {key} must be an integer in [{minimum}, {MAX_COUNT}], got {value!r}")


def split_rng(seed, dataset: str, split: str) -> np.random.Generator:
    """An independent generator for (seed, dataset, split)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"{dataset}: seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), zlib.crc32(dataset.encode()), SPLITS.index(split)])


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def limit(arrays: tuple, n: Optional[int]) -> tuple:
    return arrays if n is None else tuple(a[:n] for a in arrays)


# ---------------------------------------------------------------------------------------------- decoys


def corner_patch(images: np.ndarray, values: np.ndarray, size: int, rng: np.random.Generator):
    """Paint a ``size`` x ``size`` patch of ``values[i]`` into a uniformly chosen corner of image i."""
    n, h, w = images.shape
    r0 = rng.integers(0, 2, n) * (h - size)
    c0 = rng.integers(0, 2, n) * (w - size)
    rows = (np.arange(h) >= r0[:, None]) & (np.arange(h) < r0[:, None] + size)
    cols = (np.arange(w) >= c0[:, None]) & (np.arange(w) < c0[:, None] + size)
    mask = rows[:, :, None] & cols[:, None, :]
    out = np.where(mask, values.astype(np.uint8)[:, None, None], images)
    return out.astype(np.float32) / np.float32(255), mask


def half_fill(images: np.ndarray, values: np.ndarray, size: int, rng: np.random.Generator):
    """Squeeze each digit into the top or bottom half (row-pair mean) and fill the other half with values[i]."""
    n, h, w = images.shape
    squeezed = (images[:, 0::2].astype(np.float32) + images[:, 1::2]) / np.float32(2)
    top = rng.integers(0, 2, n).astype(bool)[:, None, None]  # digit in the top half
    fill = np.broadcast_to(values.astype(np.float32)[:, None, None], squeezed.shape)
    x = np.concatenate([np.where(top, squeezed, fill), np.where(top, fill, squeezed)], axis=1)
    mask = np.concatenate([np.broadcast_to(~top, squeezed.shape), np.broadcast_to(top, squeezed.shape)], axis=1)
    return x / np.float32(255), mask


@dataclass(frozen=True)
class Variant:
    name: str
    paper: str
    construction: str
    place: Callable  # (images uint8, values, size, rng) -> (x float32 in [0, 1], mask bool)
    size: int
    train_shade: Callable[[np.ndarray], np.ndarray]
    test_shade: Callable[[np.ndarray], np.ndarray]
    test_random: bool  # test shade digit random (else = label, under test_shade)


VARIANTS = {
    "decoy-mnist": Variant(
        "decoy-mnist", "Ross, Hughes & Doshi-Velez 2017, Right for the Right Reasons (IJCAI)",
        "4x4 swatch in a random corner; shade 255-25*y (train), 255-25*(random digit) (test); mask = swatch",
        corner_patch, 4, lambda d: 255 - 25 * d, lambda d: 255 - 25 * d, True),
    "decoy-mnist-half": Variant(
        "decoy-mnist-half", "Heo et al. 2023, Use Perturbations when Learning from Explanations (NeurIPS)",
        "digit squeezed to 28x14 (row-pair mean) in a random half; other half 25*y (train), "
        "25*(random digit) (test); mask = filled half",
        half_fill, 14, lambda d: 25 * d, lambda d: 25 * d, True),
    "decoy-mnist-cdep": Variant(
        "decoy-mnist-cdep", "Rieger, Singh, Murdoch & Yu 2020, Interpretations are Useful (ICML), CDEP",
        "5x5 patch in a random corner; shade 255-25*y (train), 25*y (test, reversed); mask = patch",
        corner_patch, 5, lambda d: 255 - 25 * d, lambda d: 25 * d, False),
}


def _cdep_corners_mask(n: int) -> np.ndarray:
    m = np.zeros((28, 28), dtype=bool)
    for r in (slice(0, 5), slice(23, 28)):
        for c in (slice(0, 5), slice(23, 28)):
            m[r, c] = True
    return np.broadcast_to(m, (n, 28, 28))


#: a loader of 28x28 uint8 images: ``load(source) -> {"train": (images, labels), "val": ..., "test": ...,
#: "source": str}`` (``source`` None = its default location)
ImageLoader = Callable[[Optional[str]], dict]


def build_decoy(variant: Variant, seed: int, options: dict, load: ImageLoader = load_mnist) -> DataSplits:
    """``variant``'s decoy painted onto the images ``load(options["source"])`` returns."""
    name = variant.name
    defaults = {"val": "train", "source": None, "limit_train": None, "groups": "label", "minority": 0.0}
    if name == "decoy-mnist-cdep":
        defaults["mask"] = "patch"
    opts = parse_options(name, options, defaults)
    check_choice(name, "val", opts["val"], ("train", "decorrelated"))
    check_choice(name, "groups", opts["groups"], ("label", "label_shade", "label_shortcut"))
    check_count(name, "limit_train", opts["limit_train"], allow_none=True)
    minority = opts["minority"]
    if isinstance(minority, bool) or not isinstance(minority, (int, float)) or not 0 <= minority <= 1:
        raise UserError(f"{name}: option minority must be a fraction in [0, 1], got {minority!r}")
    if "mask" in opts:
        check_choice(name, "mask", opts["mask"], ("patch", "corners"))
    data = load(opts["source"])
    out = {}
    for split in SPLITS:
        images, y = data[split]
        rng = split_rng(seed, name, split)
        random_digit = (split == "test" and variant.test_random) or (split == "val" and opts["val"] == "decorrelated")
        digits = rng.integers(0, 10, len(y)) if random_digit else y.copy()
        if minority > 0 and not random_digit and split != "test":
            # a separate stream, so minority=0 leaves the data exactly as before
            pick = split_rng(seed, name + "/minority", split)
            redraw = pick.random(len(y)) < minority
            digits[redraw] = pick.integers(0, 10, int(redraw.sum()))
        shade = variant.test_shade(digits) if split == "test" else variant.train_shade(digits)
        x, mask = variant.place(images, shade, variant.size, rng)
        if opts.get("mask") == "corners":
            mask = _cdep_corners_mask(len(y))
        group = y * 10 + digits if opts["groups"] != "label" else y
        if split == "train":
            x, y, mask, group = limit((x, y, mask, group), opts["limit_train"])
        out[split] = ExplanationDataset(
            to_tensor(x[:, None]), to_tensor(y), to_tensor(mask[:, None]), to_tensor(group),
            num_classes=10, num_groups=100 if opts["groups"] != "label" else 10, name=f"{name}/{split}")
    info = {
        "dataset": name, "variant": name, "paper": variant.paper, "construction": variant.construction,
        "val_protocol": opts["val"], "minority": minority, "seed": seed, "groups": opts["groups"],
        "source": data["source"], "sizes": {s: len(out[s]) for s in SPLITS}, "limit_train": opts["limit_train"],
    }
    if "mask" in opts:
        info["mask"] = opts["mask"]
    return DataSplits(out["train"], out["val"], out["test"], info)


@register_dataset("decoy-mnist")
def decoy_mnist(seed: int = 0, **options) -> DataSplits:
    """Ross et al. 2017 Decoy-MNIST (4x4 corner swatch, 255 - 25*y)."""
    return build_decoy(VARIANTS["decoy-mnist"], seed, options)


@register_dataset("decoy-mnist-half", default_model="cnn-strided", default_epochs=20, default_batch_size=64)
def decoy_mnist_half(seed: int = 0, **options) -> DataSplits:
    """Heo et al. 2023 half-image Decoy-MNIST (digit in one half, 25*y fill in the other). Trained on
    ``cnn-strided`` (the digit sits in either half) for 20 epochs (IBP-Ex spends its first 4 on the eps
    ramp) with batch 64 by default. (Heo et al.'s released config for this dataset trains a 3 x 512 fully
    connected network, a four-layer CNN commented out, with Adam lr 3e-4 on batches of 64 for 100 epochs.)
    Why these defaults: docs/results/method-tuning.md#decoy-mnist-half"""
    return build_decoy(VARIANTS["decoy-mnist-half"], seed, options)


@register_dataset("decoy-mnist-cdep")
def decoy_mnist_cdep(seed: int = 0, **options) -> DataSplits:
    """Rieger et al. 2020 (CDEP) Decoy-MNIST (5x5 random-corner patch, 255 - 25*y train, 25*y test)."""
    return build_decoy(VARIANTS["decoy-mnist-cdep"], seed, options)


def build_clean(name: str, paper: str, seed: int, options: dict, load: ImageLoader = load_mnist) -> DataSplits:
    """The images ``load(options["source"])`` returns, undecorated: all-zero masks, has_mask False."""
    opts = parse_options(name, options, {"source": None, "limit_train": None})
    check_count(name, "limit_train", opts["limit_train"], allow_none=True)
    split_rng(seed, name, "train")  # validates the seed; clean data use no randomness
    data = load(opts["source"])
    out = {}
    for split in SPLITS:
        images, y = data[split]
        if split == "train":
            images, y = limit((images, y), opts["limit_train"])
        x = images.astype(np.float32)[:, None] / np.float32(255)
        no_mask = torch.zeros((1,) + x.shape[1:], dtype=torch.bool)
        out[split] = ExplanationDataset(to_tensor(x), to_tensor(y), no_mask, None,
                                        torch.zeros(len(y), dtype=torch.bool),
                                        num_classes=10, num_groups=10, name=f"{name}/{split}")
    info = {"dataset": name, "variant": "clean", "paper": paper, "val_protocol": "train",
            "seed": seed, "source": data["source"], "sizes": {s: len(out[s]) for s in SPLITS},
            "limit_train": opts["limit_train"]}
    return DataSplits(out["train"], out["val"], out["test"], info)


@register_dataset("mnist")
def mnist(seed: int = 0, **options) -> DataSplits:
    """Clean MNIST (the oracle for the decoy variants): same splits, all-zero masks, has_mask False."""
    return build_clean("mnist", "LeCun et al. 1998", seed, options, load_mnist)
