"""ColorMNIST (Rieger, Singh, Murdoch & Yu 2020, "Interpretations are Useful", CDEP).

As in CDEP's data script: ten colours interpolated linearly in HSL from web red (h 0, s 1, l 0.5) to web
purple (#800080: h 5/6, s 1, l 64/255) in 9 equal steps (the ``colour`` package's ``range_to``); each
digit's gray intensity p in [0, 1] is multiplied by the RGB of colour y in train (and val by default) and
of colour 9 - y in test. Pixels are ``p * rgb`` in [0, 1] (CDEP then standardised per channel).

Mask choice. In RGB the colour is not a set of features: every channel of every digit pixel carries both
shape and colour (even the brightness, since the palette's lightness falls from 0.5 to 0.25), so no
binary per-feature mask can mark "the colour" (CDEP instead penalised single-pixel contributions, which
carry colour but not shape). So the default representation ``"rgb_gray"`` makes the colour separable:
``x`` is ``(N, 4, 28, 28)`` with channels 0-2 = CDEP's RGB image (bit-for-bit the coloured digit) and
channel 3 = the uncoloured gray digit p; mask = channels 0-2 (everything that carries colour). A model
that ignores the masked features sees plain MNIST. ``representation="rgb"`` gives CDEP's 3-channel
tensors with no annotation (all-zero masks, has_mask False), for colour-agnostic methods (Group DRO with
``groups="label_color"``, i.e. 10*label + colour index).

Options: ``val`` ("train" or "decorrelated": colour drawn at random), ``source``, ``limit_train``,
``groups`` ("label" or "label_color", alias "label_shortcut"), ``representation`` ("rgb_gray" or "rgb").
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from .dataset import DataSplits, ExplanationDataset
from .decoy_mnist import SPLITS, check_choice, check_count, limit, parse_options, split_rng, to_tensor
from .mnist_source import load_mnist
from .registry import register_dataset

NAME = "color-mnist"
PAPER = "Rieger, Singh, Murdoch & Yu 2020, Interpretations are Useful (ICML), CDEP ColorMNIST"
_START_HSL = (0.0, 1.0, 0.5)  # web "red" #ff0000
_END_HSL = (5.0 / 6.0, 1.0, 64.0 / 255.0)  # web "purple" #800080


def palette() -> np.ndarray:
    """The 10 CDEP colours as float64 RGB in [0, 1], shape (10, 3): colour k = HSL interpolation step k/9."""
    rows = []
    for k in range(10):
        h, s, lightness = (a + (b - a) * k / 9.0 for a, b in zip(_START_HSL, _END_HSL))
        rows.append(colorsys.hls_to_rgb(h, lightness, s))
    return np.array(rows, dtype=np.float64)


@register_dataset(NAME)
def color_mnist(seed: int = 0, **options) -> DataSplits:
    """CDEP ColorMNIST: digit coloured with colour y (train) / 9 - y (test); see the module docstring."""
    opts = parse_options(NAME, options, {"val": "train", "source": None, "limit_train": None,
                                         "groups": "label", "representation": "rgb_gray"})
    check_choice(NAME, "val", opts["val"], ("train", "decorrelated"))
    check_choice(NAME, "groups", opts["groups"], ("label", "label_color", "label_shortcut"))
    check_choice(NAME, "representation", opts["representation"], ("rgb_gray", "rgb"))
    check_count(NAME, "limit_train", opts["limit_train"], allow_none=True)
    colours = palette().astype(np.float32)
    separable = opts["representation"] == "rgb_gray"
    data = load_mnist(opts["source"])
    out = {}
    for split in SPLITS:
        images, y = data[split]
        rng = split_rng(seed, NAME, split)
        if split == "train":
            images, y = limit((images, y), opts["limit_train"])
        if split == "test":
            colour_idx = 9 - y
        elif split == "val" and opts["val"] == "decorrelated":
            colour_idx = rng.integers(0, 10, len(y))
        else:
            colour_idx = y.copy()
        gray = images.astype(np.float32)[:, None] / np.float32(255)  # (N, 1, 28, 28)
        rgb = gray * colours[colour_idx][:, :, None, None]
        if separable:
            x = np.concatenate([rgb, gray], axis=1)
            mask = np.zeros((1,) + x.shape[1:], dtype=bool)
            mask[:, :3] = True
            mask_t, has_mask = to_tensor(mask), None
        else:
            x, mask_t = rgb, torch.zeros((1,) + rgb.shape[1:], dtype=torch.bool)
            has_mask = torch.zeros(len(y), dtype=torch.bool)
        group = y * 10 + colour_idx if opts["groups"] != "label" else y
        out[split] = ExplanationDataset(
            to_tensor(x), to_tensor(y), mask_t, to_tensor(group), has_mask,
            num_classes=10, num_groups=100 if opts["groups"] != "label" else 10, name=f"{NAME}/{split}")
    info = {"dataset": NAME, "variant": "cdep", "paper": PAPER, "val_protocol": opts["val"], "seed": seed,
            "representation": opts["representation"], "groups": opts["groups"], "source": data["source"],
            "construction": "x = gray * palette[y] (train), palette[9 - y] (test); HSL red->purple, 10 steps",
            "mask": "RGB channels 0-2 (colour-carrying); channel 3 = gray digit" if separable else "none",
            "sizes": {s: len(out[s]) for s in SPLITS}, "limit_train": opts["limit_train"]}
    return DataSplits(out["train"], out["val"], out["test"], info)
