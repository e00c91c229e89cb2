"""Saliency grids: what a model looks at on the same test images, with the mask outlined.

Attributions explain s(x) = sum_k log softmax(f(x))_k (Ross et al.'s explanation, also used by
``mask_gradient_share``): ``gradient`` is ds/dx, ``ig`` the integrated gradients of s from a black
(zero) baseline. A cell shows |attribution| summed over channels, scaled by its own 99th percentile and
clipped, in a black-red-yellow-white map; the mask (1 = ignore) is outlined in cyan on every cell.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import ExplanationDataset
from ..devices import model_device
from ..errors import UserError
from ..ops.input_gradients import input_gradients
from ..ops.modes import eval_mode

OUTLINE = np.array([0, 255, 255], np.uint8)  # cyan: never produced by the heat map or a gray image
GAP = np.array([255, 255, 255], np.uint8)
CELL_PIXELS = 112  # target width of one cell


def _integrated_gradients():
    try:
        from ..ops.integrated_gradients import integrated_gradients
    except ImportError:
        return None
    return integrated_gradients


def attribution_kinds() -> tuple[str, ...]:
    """The attributions available here: always ``gradient``, plus ``ig`` when IG is installed."""
    return ("gradient", "ig") if _integrated_gradients() is not None else ("gradient",)


def pick_examples(dataset: ExplanationDataset, n: int) -> torch.Tensor:
    """Indices of ``n`` test images: the first example of class 0, 1, 2, ... in turn (cycling)."""
    if n < 1:
        raise UserError(f"number of images must be >= 1, got {n}")
    chosen: list[int] = []
    y = dataset.y
    for k in range(max(dataset.num_classes, 1) * n):
        if len(chosen) == min(n, len(dataset)):
            break
        cls = k % max(dataset.num_classes, 1)
        first = next((int(i) for i in torch.nonzero(y == cls).flatten() if int(i) not in chosen), None)
        if first is not None:
            chosen.append(first)
    return torch.tensor(chosen, dtype=torch.long)


def _log_prob_sum(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1).sum(1)


def attributions(model: nn.Module, x: torch.Tensor, kind: str = "gradient", ig_steps: int = 32) -> torch.Tensor:
    """Attribution of s(x) = sum_k log p_k for each example, same shape as ``x`` (eval mode), computed on the
    model's device and returned on the CPU."""
    x = x.to(model_device(model))
    with eval_mode(model):
        if kind == "gradient":
            return input_gradients(model, x, "log_prob_sum")[0].detach().cpu()
        ig = _integrated_gradients() if kind == "ig" else None
        if ig is None:
            raise UserError(f"unknown or unavailable attribution {kind!r}; available: {', '.join(attribution_kinds())}")
        return ig(model, x, None, _log_prob_sum, steps=ig_steps, chunk_size=8).detach().cpu()


def heat(attribution: np.ndarray) -> np.ndarray:
    """(C, H, W) attribution -> (H, W, 3) uint8: |a| summed over channels, /99th percentile, hot map."""
    a = np.abs(np.asarray(attribution, np.float64)).sum(0)
    top = np.percentile(a, 99)
    v = np.clip(a / top, 0.0, 1.0) if top > 0 else np.zeros_like(a)
    rgb = np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


def image_rgb(x: np.ndarray, input_range=(0.0, 1.0)) -> np.ndarray:
    """(C, H, W) input -> (H, W, 3) uint8 (gray for one channel, the first three channels otherwise)."""
    lo, hi = input_range
    v = np.clip((np.asarray(x, np.float64) - lo) / ((hi - lo) or 1.0), 0, 1)
    v = np.repeat(v[:1], 3, 0) if v.shape[0] == 1 else v[:3]
    return np.round(np.moveaxis(v, 0, -1) * 255).astype(np.uint8)


def cell_scale(width: int) -> int:
    return max(1, round(CELL_PIXELS / max(width, 1)))


def outline(mask: np.ndarray, scale: int) -> np.ndarray:
    """(C, H, W) or (H, W) mask -> (H*scale, W*scale) bool: the inner border of the upscaled mask."""
    m = np.asarray(mask).astype(bool)
    if m.ndim == 3:
        m = m.any(0)
    big = np.kron(m, np.ones((scale, scale), bool))
    padded = np.pad(big, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return big & ~interior


def render_cell(rgb: np.ndarray, mask: Optional[np.ndarray], scale: int) -> np.ndarray:
    """Upscale an (H, W, 3) cell by ``scale`` (nearest) and draw the mask outline on it."""
    big = np.kron(rgb, np.ones((scale, scale, 1), np.uint8))
    if mask is not None and np.asarray(mask).any():
        big[outline(mask, scale)] = OUTLINE
    return big


def tile(rows: Sequence[Sequence[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Lay out equally sized (h, w, 3) cells in rows, separated by ``gap`` pixels of GAP colour."""
    if not rows or not rows[0]:
        raise UserError("saliency grid: nothing to draw")
    h, w, _ = rows[0][0].shape
    ncols = max(len(r) for r in rows)
    out = np.empty((len(rows) * (h + gap) + gap, ncols * (w + gap) + gap, 3), np.uint8)
    out[:] = GAP
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            top, left = gap + i * (h + gap), gap + j * (w + gap)
            out[top:top + h, left:left + w] = cell
    return out


def with_row_labels(grid: np.ndarray, labels: Sequence[str], gap: int = 2) -> np.ndarray:
    """``grid`` (a :func:`tile` of ``len(labels)`` equal rows) with each row's label written in a white
    margin on its left (Pillow's built-in bitmap font), so a saved PNG says which row is which."""
    from PIL import Image, ImageDraw, ImageFont

    n = len(labels)
    if n == 0 or (grid.shape[0] - gap) % n:
        raise UserError(f"saliency grid: {n} labels do not fit a grid {grid.shape[0]} pixels high")
    row = (grid.shape[0] - gap) // n  # cell height + gap
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [draw.textbbox((0, 0), text, font=font)[2] for text in labels]
    margin = max(widths) + 12
    canvas = Image.new("RGB", (margin + grid.shape[1], grid.shape[0]), tuple(int(c) for c in GAP))
    canvas.paste(Image.fromarray(grid), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(labels):
        top, bottom = draw.textbbox((0, 0), text, font=font)[1::2]
        draw.text((6, gap + i * row + (row - gap - (bottom - top)) // 2 - top), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas, dtype=np.uint8)


def input_row(dataset: ExplanationDataset, index: torch.Tensor) -> list[np.ndarray]:
    """The chosen inputs themselves, mask outlined."""
    x = dataset.batch(index).x.numpy()
    scale = cell_scale(x.shape[-1])
    return [render_cell(image_rgb(xi, dataset.input_range), _mask_of(dataset, int(i)), scale)
            for xi, i in zip(x, index)]


def saliency_row(model: nn.Module, dataset: ExplanationDataset, index: torch.Tensor,
                 kind: str = "gradient") -> list[np.ndarray]:
    """One model's attributions on the chosen inputs, one cell per image, mask outlined."""
    x = dataset.batch(index).x
    a = attributions(model, x, kind).numpy()
    scale = cell_scale(x.shape[-1])
    return [render_cell(heat(ai), _mask_of(dataset, int(i)), scale) for ai, i in zip(a, index)]


def _mask_of(dataset: ExplanationDataset, i: int) -> Optional[np.ndarray]:
    return dataset.batch(torch.tensor([i])).mask[0].bool().numpy() if bool(dataset.has_mask[i]) else None


def explain_grid(model: nn.Module, dataset: ExplanationDataset, n: int = 8,
                 kinds: Optional[Sequence[str]] = None) -> np.ndarray:
    """One model's grid: the inputs on the first row, then one row per attribution kind."""
    index = pick_examples(dataset, n)
    rows = [input_row(dataset, index)]
    rows += [saliency_row(model, dataset, index, kind) for kind in (kinds or attribution_kinds())]
    return tile(rows)


def methods_grid(models: dict[str, nn.Module], dataset: ExplanationDataset, n: int = 8,
                 kind: str = "gradient") -> tuple[np.ndarray, list[str]]:
    """Several models on the same images: the inputs first, then one row per model (in dict order).
    Returns the image and the row labels."""
    index = pick_examples(dataset, n)
    rows = [input_row(dataset, index)] + [saliency_row(m, dataset, index, kind) for m in models.values()]
    return tile(rows), ["input"] + list(models)
