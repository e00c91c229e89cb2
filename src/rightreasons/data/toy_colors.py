"""Toy Colors (Ross, Hughes & Doshi-Velez 2017, "Right for the Right Reasons").

5x5 RGB images (``(N, 3, 5, 5)`` float32 in [0, 1]) whose pixels take one of four colours, the set used by
Ross's generator: red (255, 0, 0), green (0, 255, 0), blue (0, 128, 255) and violet (128, 0, 255).
Two rules each decide the class on their own:

- rule 1: the four corners share one colour;
- rule 2: the three top-middle pixels (row 0, columns 1-3) are all different.

Class 0 images satisfy both, class 1 images neither; no other image is generated. As in Ross's
generator, every pixel starts uniformly random; class 0 then copies the bottom-right colour to the other
corners and recolours a random top-middle pixel until the three differ; class 1 (with probability 1/2
each) redraws the top-right corner until it differs from the bottom-left, or the top-left until it
differs from the bottom-right, then recolours a random top-middle pixel until two of them match. The same
loops run here vectorised over examples. Classes are exactly balanced (Ross drew labels as coin flips).

Options: ``annotate`` = "corners" (default: mask = the 4 corner pixels, all channels, so the model must
use rule 2), "top_middle" (mask = the 3 top-middle pixels, so it must use rule 1) or "none" (no
annotation, has_mask False); ``n_train`` (default 20000, Ross's N), ``n_val`` (2000), ``n_test`` (20000).
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import DataSplits, ExplanationDataset
from .decoy_mnist import SPLITS, check_choice, check_count, parse_options, split_rng, to_tensor
from .registry import register_dataset

NAME = "toy-colors"
PAPER = "Ross, Hughes & Doshi-Velez 2017, Right for the Right Reasons (IJCAI), Toy Colors"
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 128, 255], [128, 0, 255]], dtype=np.uint8)
CORNERS = ((0, 0), (0, 4), (4, 0), (4, 4))
TOP_MIDDLE = ((0, 1), (0, 2), (0, 3))


def _has_repeat(idx: np.ndarray) -> np.ndarray:
    tm = idx[:, 0, 1:4]
    return (tm[:, 0] == tm[:, 1]) | (tm[:, 0] == tm[:, 2]) | (tm[:, 1] == tm[:, 2])


def _recolour_top_middle(idx: np.ndarray, rows: np.ndarray, want_repeat: bool, rng: np.random.Generator):
    while True:
        active = np.flatnonzero(rows & (_has_repeat(idx) != want_repeat))
        if active.size == 0:
            return
        idx[active, 0, 1 + rng.integers(0, 3, active.size)] = rng.integers(0, 4, active.size)


def _redraw_until_differs(idx, rows, pixel, other, rng):
    while True:
        active = np.flatnonzero(rows & (idx[:, pixel[0], pixel[1]] == idx[:, other[0], other[1]]))
        if active.size == 0:
            return
        idx[active, pixel[0], pixel[1]] = rng.integers(0, 4, active.size)


def generate(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour indices (N, 5, 5) in 0..3 for the given 0/1 labels, following Ross's generator."""
    n = len(labels)
    idx = rng.integers(0, 4, (n, 5, 5))
    zero, one = labels == 0, labels == 1
    for r, c in CORNERS[:3]:
        idx[zero, r, c] = idx[zero, 4, 4]
    _recolour_top_middle(idx, zero, want_repeat=False, rng=rng)
    first = rng.random(n) < 0.5
    _redraw_until_differs(idx, one & first, (0, 4), (4, 0), rng)
    _redraw_until_differs(idx, one & ~first, (0, 0), (4, 4), rng)
    _recolour_top_middle(idx, one, want_repeat=True, rng=rng)
    return idx


def _mask(annotate: str) -> torch.Tensor:
    m = torch.zeros((1, 3, 5, 5), dtype=torch.bool)
    for r, c in {"corners": CORNERS, "top_middle": TOP_MIDDLE, "none": ()}[annotate]:
        m[0, :, r, c] = True
    return m


@register_dataset(NAME)
def toy_colors(seed: int = 0, **options) -> DataSplits:
    """Ross et al. 2017 Toy Colors; see the module docstring for rules and options."""
    opts = parse_options(NAME, options, {"annotate": "corners", "n_train": 20000, "n_val": 2000, "n_test": 20000})
    check_choice(NAME, "annotate", opts["annotate"], ("corners", "top_middle", "none"))
    for key in ("n_train", "n_val", "n_test"):
        check_count(NAME, key, opts[key], minimum=2)
    mask = _mask(opts["annotate"])
    out = {}
    for split in SPLITS:
        n = int(opts[f"n_{split}"])
        rng = split_rng(seed, NAME, split)
        labels = rng.permutation(np.repeat(np.array([0, 1]), [(n + 1) // 2, n // 2]))
        pixels = COLOURS[generate(labels, rng)].transpose(0, 3, 1, 2)  # (N, 3, 5, 5)
        x = pixels.astype(np.float32) / np.float32(255)
        has_mask = torch.full((n,), opts["annotate"] != "none", dtype=torch.bool)
        out[split] = ExplanationDataset(to_tensor(x), to_tensor(labels.astype(np.int64)), mask, None, has_mask,
                                        num_classes=2, num_groups=2, name=f"{NAME}/{split}")
    info = {"dataset": NAME, "variant": "ross", "paper": PAPER, "annotate": opts["annotate"], "seed": seed,
            "val_protocol": "same distribution as train and test (both rules hold everywhere)",
            "construction": "class 0: corners equal and top-middle distinct; class 1: neither",
            "sizes": {s: len(out[s]) for s in SPLITS}}
    return DataSplits(out["train"], out["val"], out["test"], info)
