"""Which rule does a Toy Colors model use? (Ross et al. 2017: rule 1 = the four corners share a colour,
rule 2 = the three top-middle pixels all differ; both hold in every training and test image.)

Two diagnostics:

- gradient shares: the mean share of input-gradient mass |d sum_k log p_k / dx| on the 4 corner pixels
  and on the 3 top-middle pixels (all channels), over the test images;
- a conflict set where the rules disagree: each image takes its corners (and every other pixel) from
  a Toy Colors image of class a and its top-middle pixels from an independent image of class b; the
  accuracy against a says how well the model follows the corner rule, against b the top-middle rule
  (a model following one rule scores about 1 on it and 0.5 on the other).

``rule`` is "corners" or "top_middle" when that rule's conflict-set accuracy is at least 0.8 (both
cannot be, the labels disagree half the time), else "unclear".
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..data.dataset import ExplanationDataset
from ..data.toy_colors import COLOURS, CORNERS, TOP_MIDDLE, generate
from ..metrics.saliency import mask_share
from ..ops.input_gradients import input_gradients
from ..ops.modes import eval_mode

RULE_ACCURACY = 0.8


def region_mask(pixels) -> torch.Tensor:
    """(1, 3, 5, 5) float mask of the given (row, column) pixels, all channels."""
    m = torch.zeros((1, 3, 5, 5))
    for r, c in pixels:
        m[0, :, r, c] = 1
    return m


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return generate(labels, rng)


def toy_colors_conflict_set(n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y_corners, y_top_middle)``: n images (N, 3, 5, 5) in [0, 1] whose corner rule says
    y_corners and whose top-middle rule says y_top_middle, the two labels independent and balanced."""
    rng = np.random.default_rng([int(seed), 20170824])
    a = rng.permutation(np.repeat(np.array([0, 1]), [(n + 1) // 2, n // 2]))
    b = rng.permutation(np.repeat(np.array([0, 1]), [(n + 1) // 2, n // 2]))
    idx = _images(a, rng)
    idx[:, 0, 1:4] = _images(b, rng)[:, 0, 1:4]
    x = COLOURS[idx].transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(a), torch.from_numpy(b)


def gradient_shares(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> dict:
    """Mean share of input-gradient mass on the corners and on the top-middle pixels (images whose
    gradient is exactly zero are left out; NaN if all are)."""
    corners, top = region_mask(CORNERS), region_mask(TOP_MIDDLE)
    sums = {"corners": 0.0, "top_middle": 0.0}
    count = 0
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            grad, _ = input_gradients(model, x[start:start + batch_size])
            for key, region in (("corners", corners), ("top_middle", top)):
                share = mask_share(grad, region.expand_as(grad))
                sums[key] += share[~share.isnan()].sum().item()
            count += int((~share.isnan()).sum())
    return {key: value / count if count else math.nan for key, value in sums.items()}


def rule_report(model: nn.Module, test: ExplanationDataset, n: int = 2000, seed: int = 0) -> dict:
    """Gradient shares on the test images, conflict-set accuracies of both rules, and the verdict."""
    x, y_corners, y_top = toy_colors_conflict_set(n, seed)
    with eval_mode(model), torch.no_grad():
        pred = model(x).argmax(1)
    corner_acc = (pred == y_corners).float().mean().item()
    top_acc = (pred == y_top).float().mean().item()
    shares = gradient_shares(model, test.x)
    rule = "corners" if corner_acc >= RULE_ACCURACY else "top_middle" if top_acc >= RULE_ACCURACY else "unclear"
    return {"rule": rule, "corners_rule_accuracy": corner_acc, "top_middle_rule_accuracy": top_acc,
            "corners_gradient_share": shares["corners"], "top_middle_gradient_share": shares["top_middle"]}
