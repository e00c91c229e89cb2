"""Masks proposed from a trained model's own saliency: the regions a (typically ERM) model relies on,
written as a new image folder that a person can review and that trains directly.

Pipeline per example (:func:`propose_masks`): saliency ``s = sum_c |d sum_k log p_k / dx_c|`` (or
``|integrated gradients|`` with ``attribution="ig"``), normalised by its maximum; the pixels with
``s >= threshold`` (or the ``top_fraction`` most salient pixels) kept; their connected components
under ``min_area`` pixels dropped, each dilated by ``dilate`` pixels; of those, the ``components``
largest (``choose="largest"``, what :func:`postprocess` does on a given saliency map) or, of the
``candidates`` largest, the ``components`` whose occlusion lowers the predicted class's
log-probability most (``choose="occlusion"``). With ``select="relied"`` only examples where that drop
is at least ``min_drop`` and the proposal covers at most ``max_fraction`` of the image get one (a rule
on the model alone, never on true masks or groups; ``select="all"``: every example).

:func:`write_proposals` writes ``DIR/labels.csv`` (the source rows, with an explicit ``split``
column), ``DIR/images/`` (the source images, hard-linked or copied), ``DIR/masks/`` (proposals, white =
ignore), ``DIR/true_masks/`` (the source masks, binarised) and ``DIR/proposals.csv`` (per row: the
proposal, the source mask, their IoU, the occlusion drop). Rows of the proposal splits carry the proposal (or an
empty mask cell when none is proposed); rows of the other splits keep their source masks.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .devices import model_device
from .errors import UserError
from .files import atomic_write, atomic_write_text, fsync_dir, umask
from .ops.input_gradients import input_gradients
from .ops.integrated_gradients import integrated_gradients
from .ops.modes import eval_mode

ATTRIBUTIONS = ("gradient", "ig")
CHOICES = ("occlusion", "largest")
SELECTIONS = ("all", "relied")
#: the defaults of :func:`propose_masks`
DEFAULTS = {"threshold": 0.3, "top_fraction": None, "dilate": 1, "min_area": 4, "components": 1,
            "connectivity": 8, "attribution": "gradient", "choose": "occlusion", "candidates": 5,
            "select": "relied", "min_drop": 0.05, "max_fraction": 0.1}


# ------------------------------------------------------------------------------------------ checks


def _check_number(name: str, value, low: float, high: float, integer: bool = False, open_low: bool = False):
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)) \
            or value < low or value > high or (open_low and value == low):
        kind = "an integer" if integer else "a number"
        bracket = "(" if open_low else "["
        raise UserError(f"propose_masks: {name} must be {kind} in {bracket}{low:g}, {high:g}], got {value!r}")
    return value


def _check_postprocess(threshold, top_fraction, dilate, min_area, components, connectivity) -> None:
    _check_number("threshold", threshold, 0, 1, open_low=True)
    if top_fraction is not None:
        _check_number("top_fraction", top_fraction, 0, 1, open_low=True)
    _check_number("dilate", dilate, 0, 10_000, integer=True)
    _check_number("min_area", min_area, 0, 10**9, integer=True)
    _check_number("components", components, 1, 10**9, integer=True)
    if connectivity not in (4, 8) or isinstance(connectivity, bool):
        raise UserError(f"propose_masks: connectivity must be 4 or 8, got {connectivity!r}")


def _image_shape(dataset) -> tuple[int, int, int]:
    shape = tuple(getattr(dataset, "input_shape", ()))
    if len(shape) != 3:
        name = getattr(dataset, "name", "dataset")
        raise UserError(f"{name}: mask proposals need images (N, C, H, W), got inputs of shape (N, "
                        f"{', '.join(map(str, shape))})")
    return shape


# ------------------------------------------------------------------------------------------ saliency


def _log_prob_sum(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1).sum(1)


def saliency(model: nn.Module, dataset, attribution: str = "gradient", batch_size: int = 64,
             ig_steps: int = 32) -> torch.Tensor:
    """(N, H, W) float on the CPU: ``sum_c |attribution|`` of ``sum_k log p_k`` per pixel, divided by
    its per-example maximum (all zeros where the attribution is zero). ``attribution``: ``gradient``
    (input gradient) or ``ig`` (integrated gradients from a zero baseline, ``ig_steps`` steps)."""
    _image_shape(dataset)
    if attribution not in ATTRIBUTIONS:
        raise UserError(f"propose_masks: attribution must be one of {', '.join(ATTRIBUTIONS)}, got {attribution!r}")
    _check_number("batch_size", batch_size, 1, 10**9, integer=True)
    _check_number("ig_steps", ig_steps, 1, 10**6, integer=True)
    device = model_device(model)
    out = []
    with eval_mode(model):
        for batch in dataset.batches(batch_size):
            x = batch.x.to(device)
            if attribution == "gradient":
                grad, _ = input_gradients(model, x, "log_prob_sum")
            else:
                grad = integrated_gradients(model, x, None, _log_prob_sum, steps=ig_steps)
            out.append(grad.detach().abs().sum(1).float().cpu())
    if not out:
        return torch.zeros(0, *_image_shape(dataset)[1:])
    s = torch.cat(out)
    peak = s.flatten(1).amax(1).clamp_min(torch.finfo(s.dtype).tiny)
    return s / peak[:, None, None]


# ------------------------------------------------------------------------------------------ post-processing


def _neighbour_max(labels: torch.Tensor, connectivity: int) -> torch.Tensor:
    """Per pixel, the maximum of ``labels`` (N, 1, H, W) over the pixel and its 4 or 8 neighbours."""
    if connectivity == 8:
        return F.max_pool2d(labels, 3, stride=1, padding=1)
    padded = F.pad(labels, (1, 1, 1, 1))
    centre = padded[..., 1:-1, 1:-1]
    return torch.stack([centre, padded[..., :-2, 1:-1], padded[..., 2:, 1:-1],
                        padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]]).amax(0)


def connected_components(binary: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """Labels (N, H, W) int64 of the 4- or 8-connected components of ``binary`` (N, H, W): 0 off, each
    component the largest ``1 + flat index`` among its pixels (propagated by repeated neighbour maxima)."""
    on = binary.bool()
    n, h, w = on.shape
    index = torch.arange(1, h * w + 1, dtype=torch.float64).reshape(1, 1, h, w).expand(n, 1, h, w)
    mask = on[:, None].double()
    labels = index * mask
    while True:
        grown = _neighbour_max(labels, connectivity) * mask
        if torch.equal(grown, labels):
            return labels[:, 0].long()
        labels = grown


def candidate_components(saliency_map: torch.Tensor, threshold: float = 0.3, top_fraction: Optional[float] = None,
                         min_area: int = 4, candidates: int = 1, connectivity: int = 8,
                         dilate: int = 0) -> list[torch.Tensor]:
    """Per example, bool (K, H, W): the ``candidates`` largest ``connectivity``-connected components of
    the pixels with ``s >= threshold * max(s)`` (with ``top_fraction``: ``s >= `` the
    ``ceil(top_fraction * H * W)``-th largest value instead; never ``s == 0``) that have at least
    ``min_area`` pixels, largest first (ties: the later label first), each dilated by ``dilate`` pixels."""
    _check_postprocess(threshold, top_fraction, dilate, min_area, candidates, connectivity)
    s = saliency_map.detach().float().cpu()
    if s.dim() == 4 and s.shape[1] == 1:
        s = s[:, 0]
    if s.dim() != 3:
        raise UserError(f"postprocess: saliency must have shape (N, H, W) or (N, 1, H, W), got "
                        f"{tuple(saliency_map.shape)}")
    if not torch.isfinite(s).all():
        raise UserError("postprocess: saliency has NaN or infinite values")
    n, h, w = s.shape
    if n == 0:
        return []
    flat = s.flatten(1)
    if top_fraction is None:
        cut = threshold * flat.amax(1)
    else:
        k = min(h * w, max(1, math.ceil(top_fraction * h * w)))
        cut = flat.sort(1, descending=True).values[:, k - 1]
    binary = (s >= cut[:, None, None]) & (s > 0)
    labels = connected_components(binary, connectivity)
    out = []
    for i in range(n):
        ids, sizes = torch.unique(labels[i][labels[i] > 0], return_counts=True)
        order = sorted(range(len(ids)), key=lambda j: (-int(sizes[j]), -int(ids[j])))[:candidates]
        keep = [int(ids[j]) for j in order if int(sizes[j]) >= min_area]
        parts = torch.stack([labels[i] == c for c in keep]) if keep else torch.zeros(0, h, w, dtype=torch.bool)
        if dilate and len(parts):
            parts = F.max_pool2d(parts[:, None].float(), 2 * dilate + 1, stride=1, padding=dilate)[:, 0].bool()
        out.append(parts)
    return out


def postprocess(saliency_map: torch.Tensor, threshold: float = DEFAULTS["threshold"],
                top_fraction: Optional[float] = DEFAULTS["top_fraction"], dilate: int = DEFAULTS["dilate"],
                min_area: int = DEFAULTS["min_area"], components: int = DEFAULTS["components"],
                connectivity: int = DEFAULTS["connectivity"]) -> torch.Tensor:
    """Bool masks (N, 1, H, W) from saliency maps (N, H, W) or (N, 1, H, W), per example: pixels with
    ``s >= threshold * max(s)`` (with ``top_fraction``: the ``ceil(top_fraction * H * W)`` most salient,
    ties included), never pixels with ``s == 0``; then the ``components`` largest ``connectivity``-
    connected components, minus those of fewer than ``min_area`` pixels; then dilated by ``dilate``
    pixels (a (2 dilate + 1)-square max pool). See :func:`candidate_components`."""
    parts = candidate_components(saliency_map, threshold, top_fraction, min_area, components, connectivity, dilate)
    h, w = saliency_map.shape[-2:]
    return torch.stack([p.any(0) for p in parts])[:, None] if parts else torch.zeros(0, 1, h, w, dtype=torch.bool)


def saliency_share(saliency_map: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) the share of each example's saliency mass inside its mask: ``sum(s * m) / sum(s)`` (0 where
    ``sum(s)`` is 0)."""
    s = saliency_map.float().reshape(saliency_map.shape[0], -1)
    m = _flat(masks).float()
    total = s.sum(1)
    return torch.where(total > 0, (s * m).sum(1) / total.clamp_min(1e-30), torch.zeros_like(total))


def occluded(x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``x`` (C, H, W) with the pixels of each mask (K, H, W) set to the per-channel median of the pixels
    outside it (of all pixels when the mask covers the image): (K, C, H, W)."""
    out = x.unsqueeze(0).repeat(len(masks), 1, 1, 1)
    for k, m in enumerate(masks):
        m = m.to(x.device)
        outside = ~m if (~m).any() else torch.ones_like(m)
        fill = x[:, outside].median(1).values
        out[k] = torch.where(m, fill[:, None, None], x)
    return out


def occlusion_drops(model: nn.Module, x: torch.Tensor, parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per example of ``x`` (B, C, H, W), the drop in the log-probability of the predicted class when
    each candidate region of ``parts[i]`` (K_i, H, W) is :func:`occluded`: (K_i,) on the CPU."""
    with torch.no_grad():
        base = F.log_softmax(model(x), 1)
        out = []
        for i, p in enumerate(parts):
            if not len(p):
                out.append(torch.zeros(0))
                continue
            c = int(base[i].argmax())
            after = F.log_softmax(model(occluded(x[i], p)), 1)[:, c]
            out.append((base[i, c] - after).float().cpu())
    return out


def propose_masks(model: nn.Module, dataset, threshold: float = DEFAULTS["threshold"],
                  top_fraction: Optional[float] = DEFAULTS["top_fraction"], dilate: int = DEFAULTS["dilate"],
                  min_area: int = DEFAULTS["min_area"], components: int = DEFAULTS["components"],
                  attribution: str = DEFAULTS["attribution"], batch_size: int = 64,
                  connectivity: int = DEFAULTS["connectivity"], choose: str = DEFAULTS["choose"],
                  candidates: int = DEFAULTS["candidates"], select: str = DEFAULTS["select"],
                  min_drop: float = DEFAULTS["min_drop"], max_fraction: float = DEFAULTS["max_fraction"],
                  ig_steps: int = 32, return_details: bool = False):
    """Bool masks (N, 1, H, W) on the CPU, 1 = the region the model relies on: :func:`saliency`, then the
    connected components of :func:`postprocess` (same parameters). ``choose="largest"``: the
    ``components`` largest; ``choose="occlusion"``: of the ``candidates`` largest, the ``components``
    whose :func:`occluded` version lowers the predicted class's log-probability most. ``select="relied"``:
    an example keeps its proposal only if occluding it lowers that log-probability by ``>= min_drop``
    and it covers at most ``max_fraction`` of the image (a rule on the model alone: the model relies on a
    compact region); others get an empty mask. The model runs in eval mode (restored) on its
    own device. With ``return_details``: ``(masks, selected (N,) bool, drop (N,))``, ``drop`` the largest
    drop of a kept component (NaN without one)."""
    if choose not in CHOICES:
        raise UserError(f"propose_masks: choose must be one of {', '.join(CHOICES)}, got {choose!r}")
    if select not in SELECTIONS:
        raise UserError(f"propose_masks: select must be one of {', '.join(SELECTIONS)}, got {select!r}")
    _check_number("min_drop", min_drop, -1e9, 1e9)
    _check_number("max_fraction", max_fraction, 0, 1, open_low=True)
    _check_postprocess(threshold, top_fraction, dilate, min_area, components, connectivity)
    _check_number("candidates", candidates, 1, 10**6, integer=True)
    s = saliency(model, dataset, attribution, batch_size, ig_steps)
    pool = max(candidates, components) if choose == "occlusion" else components
    parts = candidate_components(s, threshold, top_fraction, min_area, pool, connectivity, dilate)
    n, h, w = s.shape
    masks = torch.zeros(n, 1, h, w, dtype=torch.bool)
    drop = torch.full((n,), float("nan"))
    device = model_device(model)
    with eval_mode(model):
        start = 0
        for batch in dataset.batches(batch_size):
            x = batch.x.to(device)
            chunk = parts[start:start + len(x)]
            drops = occlusion_drops(model, x, chunk)
            for i, (p, d) in enumerate(zip(chunk, drops)):
                if not len(p):
                    continue
                order = (torch.argsort(d, descending=True, stable=True) if choose == "occlusion"
                         else torch.arange(len(p)))[:components]
                union = p[order].any(0)
                masks[start + i, 0] = union
                drop[start + i] = d[order].max()
            start += len(x)
    selected = masks.flatten(1).any(1)
    if select == "relied":
        selected &= torch.nan_to_num(drop, nan=-float("inf")) >= min_drop
        selected &= masks.flatten(1).float().mean(1) <= max_fraction
    masks &= selected[:, None, None, None]
    return (masks, selected, drop) if return_details else masks


# ------------------------------------------------------------------------------------------ agreement


def _flat(masks: torch.Tensor) -> torch.Tensor:
    """(N, H*W) bool: a pixel is on when any channel is (masks (N, H, W) or (N, C, H, W))."""
    m = torch.as_tensor(masks).bool()
    if m.dim() == 4:
        m = m.any(1)
    if m.dim() != 3:
        raise UserError(f"masks must have shape (N, H, W) or (N, C, H, W), got {tuple(m.shape)}")
    return m.flatten(1)


def mask_iou(proposed: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """(N,) float64: ``|P & T| / |P | T|`` per example (channels merged by OR), NaN where both are empty."""
    p, t = _flat(proposed), _flat(true)
    if p.shape != t.shape:
        raise UserError(f"mask_iou: proposed masks {tuple(proposed.shape)} and true masks {tuple(true.shape)} differ")
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))


def iou_summary(proposed: torch.Tensor, true: torch.Tensor, has_mask: Optional[torch.Tensor] = None) -> dict:
    """Agreement with the true masks over the annotated examples (``has_mask``, default all):
    ``mean_iou`` over those whose true mask is non-empty, ``recall`` = the share of their true-mask pixels
    inside the proposals, ``precision`` = the share of their proposed pixels inside the true masks,
    ``proposed_on_empty`` = proposals on annotated examples whose true mask is empty, and the counts."""
    p, t = _flat(proposed), _flat(true)
    iou = mask_iou(proposed, true)
    annotated = torch.ones(len(p), dtype=torch.bool) if has_mask is None else torch.as_tensor(has_mask).bool().cpu()
    nonempty = annotated & t.any(1)
    empty = annotated & ~t.any(1)
    covered = (p & t)[nonempty].sum().item()
    true_px = t[nonempty].sum().item()
    proposed_px = p[nonempty].sum().item()
    return {
        "mean_iou": float(iou[nonempty].mean()) if nonempty.any() else float("nan"),
        "recall": covered / true_px if true_px else float("nan"),
        "precision": covered / proposed_px if proposed_px else float("nan"),
        "examples": len(p), "with_true_mask": int(nonempty.sum()), "proposals": int(p.any(1).sum()),
        "proposed_on_empty": int((p.any(1) & empty).sum()), "empty_true_masks": int(empty.sum()),
    }


# ------------------------------------------------------------------------------------------ writing


def folder_rows(path: str | Path, seed: int = 0,
                **options) -> tuple[list[str], list[tuple[int, list[str]]], np.ndarray]:
    """(header, rows, split index per row) of the image folder ``path``, with the train / val / test
    assignment its loader makes for ``seed`` and ``options`` (the order of each split's examples is the
    order of its rows)."""
    from .data.csv_common import (
        encode_labels,
        encode_splits,
        label_and_split_options,
        parse_options,
        read_csv,
        resolve_splits,
    )
    from .data.folder import DEFAULTS as FOLDER_DEFAULTS
    from .data.folder import LABELS_FILE

    source = f"folder:{path}"
    opts = parse_options(source, options, FOLDER_DEFAULTS)
    classes, num_classes, val_f, test_f, rng = label_and_split_options(source, opts, seed, "folder")
    csv_path = Path(path) / LABELS_FILE
    header, rows = read_csv(csv_path, "labels CSV")
    for required in ("file", "label"):
        if required not in header:
            raise UserError(f"{csv_path}: missing column {required!r} (header: {', '.join(header)})")
    numbers = [r for r, _ in rows]
    y, _ = encode_labels(csv_path, numbers, [c[header.index("label")] for _, c in rows], "label", classes,
                         num_classes)
    split_col = (encode_splits(csv_path, numbers, [c[header.index("split")] for _, c in rows], "split")
                 if "split" in header else None)
    split, _ = resolve_splits(csv_path, y, split_col, rng, val_f, test_f)
    return header, rows, split


def _is_inside(inner: Path, outer: Path) -> bool:
    return inner == outer or inner.is_relative_to(outer)


def _place_file(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to ``src`` (a copy where links are impossible), atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _write_mask_png(path: Path, mask: np.ndarray, size_wh: tuple[int, int]) -> None:
    """A bool (h, w) mask as a grayscale PNG (white = ignore), resized (nearest) to ``size_wh``."""
    from PIL import Image

    img = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
    if img.size != tuple(size_wh):
        img = img.resize(tuple(size_wh), Image.NEAREST)

    def write(tmp: str) -> None:
        img.save(tmp, format="PNG")

    atomic_write(path, write)


def _csv_text(header: list[str], rows: Iterable[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _fmt(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def write_proposals(out: str | Path, dataset_folder: str | Path, splits: Iterable[str], masks: dict,
                    seed: int = 0, data_options: Optional[dict] = None, overwrite: bool = False,
                    selected: Optional[dict] = None, drop: Optional[dict] = None) -> Path:
    """Write the image folder ``out``: the rows of ``dataset_folder/labels.csv`` (read with ``seed`` and
    ``data_options``, as the proposals' data was loaded) with images hard-linked or copied into
    ``out/images/``, an explicit ``split`` column, and as mask: for the rows of ``splits``, the proposal
    ``masks[split][i]`` (bool (1, h, w) at the data's size, written at the image's size to
    ``out/masks/``; an empty cell where ``selected[split][i]`` is False), for the other rows their source
    mask (binarised, in ``out/true_masks/``). ``out/proposals.csv`` lists, per row, the proposal, the
    source mask, their IoU and the occlusion ``drop``. ``out`` must not exist or be empty unless
    ``overwrite``; it is built beside ``out`` and renamed into place; the source folder is only read."""
    from PIL import Image

    from .data.csv_common import SPLIT_NAMES
    from .data.folder import _mask, dataset_file

    data_options = dict(data_options or {})
    splits = tuple(splits)
    for name in splits:
        if name not in SPLIT_NAMES:
            raise UserError(f"write_proposals: unknown split {name!r}; known: {', '.join(SPLIT_NAMES)}")
        if name not in masks:
            raise UserError(f"write_proposals: no masks given for split {name!r}")
    src = Path(dataset_folder)
    out = Path(out)
    src_real, out_real = Path(os.path.realpath(src)), Path(os.path.realpath(out))
    if _is_inside(out_real, src_real) or _is_inside(src_real, out_real):
        raise UserError(f"{out}: the output folder must lie outside the source folder {src} (and not contain it)")
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise UserError(f"{out}: exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise UserError(f"{out}: already exists and is not empty; choose another --out or pass --overwrite")

    header, rows, split = folder_rows(src, seed, **data_options)
    allow_outside = str(data_options.get("allow_outside", False)).lower() in ("true", "1", "yes")
    mask_opts = {"mask_threshold": data_options.get("mask_threshold"),
                 "mask_invert": str(data_options.get("mask_invert", False)).lower() in ("true", "1", "yes")}
    csv_path = src / "labels.csv"
    positions = {i: np.flatnonzero(split == i) for i in range(len(SPLIT_NAMES))}
    for name in splits:
        expected = len(positions[SPLIT_NAMES.index(name)])
        if len(masks[name]) != expected:
            raise UserError(f"write_proposals: {len(masks[name])} masks for split {name!r} but {src} has {expected} "
                            f"{name} rows (seed {seed}, data options {data_options})")
    where_in_split = {}
    for idx in positions.values():
        for k, row in enumerate(idx):
            where_in_split[int(row)] = k

    col = {c: header.index(c) for c in header}
    names = [cells[col["file"]] for _, cells in rows]
    basenames = [Path(n).name for n in names]
    unique = len(set(basenames)) == len(basenames)
    out_header = header if "split" in header else [*header, "split"]
    if "mask" not in out_header:
        out_header = [*out_header, "mask"]

    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    try:
        out_rows, report = [], []
        for j, (row, cells) in enumerate(rows):
            split_name = SPLIT_NAMES[int(split[j])]
            base = basenames[j] if unique else f"{j:06d}_{basenames[j]}"
            image_real = dataset_file(src_real, csv_path, row, "file", names[j], allow_outside)
            image_rel = f"images/{base}"
            _place_file(image_real, stage / image_rel)
            with Image.open(image_real) as im:
                size_wh = im.size
            true_name = cells[col["mask"]] if "mask" in col else ""
            true_rel = ""
            true_np = None
            if true_name:
                mask_real = dataset_file(src_real, csv_path, row, "mask", true_name, allow_outside)
                true_np = _mask(mask_real, f"{src / true_name} (labels.csv row {row})", (size_wh[1], size_wh[0]),
                                mask_opts)
                true_rel = f"true_masks/{Path(base).stem}.png"
                _write_mask_png(stage / true_rel, true_np, size_wh)
            mask_rel, iou_text, drop_text, proposed = true_rel, "", "", ""
            if split_name in splits:
                k = where_in_split[j]
                m = torch.as_tensor(masks[split_name][k]).bool()
                m = (m.any(0) if m.dim() == 3 else m).cpu().numpy()
                keep = bool(selected[split_name][k]) if selected is not None else bool(m.any())
                mask_rel = ""
                if keep:
                    mask_rel = f"masks/{Path(base).stem}.png"
                    _write_mask_png(stage / mask_rel, m, size_wh)
                proposed = "1" if keep else "0"
                if drop is not None:
                    drop_text = _fmt(float(drop[split_name][k]))
                if true_np is not None:
                    t = np.asarray(Image.fromarray(true_np.astype(np.uint8)).resize((m.shape[1], m.shape[0]),
                                                                                   Image.NEAREST)).astype(bool)
                    pm = m if keep else np.zeros_like(m)
                    iou_text = _fmt(float(mask_iou(torch.from_numpy(pm)[None], torch.from_numpy(t)[None])[0]))
            new = list(cells)
            new[col["file"]] = image_rel
            if "split" in col:
                new[col["split"]] = split_name
            else:
                new.append(split_name)
            if "mask" in col:
                new[col["mask"]] = mask_rel
            else:
                new.append(mask_rel)
            out_rows.append(new)
            report.append([image_rel, split_name, proposed, mask_rel if proposed == "1" else "", true_rel, iou_text,
                           drop_text])
        atomic_write_text(stage / "proposals.csv", _csv_text(
            ["file", "split", "proposed", "proposal", "true_mask", "iou", "occlusion_drop"], report))
        atomic_write_text(stage / "labels.csv", _csv_text(out_header, out_rows))
        os.chmod(stage, 0o777 & ~umask())
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.rmdir(old)
            os.replace(out, old)
        os.replace(stage, out)
        fsync_dir(parent, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


def train_command(out: str | Path, data_options: Optional[dict] = None) -> str:
    """The ``rightreasons train`` command line that trains on the written folder ``out`` (with the data
    options that shape the inputs: size, channels, normalize, classes, num_classes)."""
    shaping = ("size", "channels", "normalize", "classes", "num_classes")
    parts = [f"rightreasons train --data folder:{out}"]
    for key in shaping:
        value = (data_options or {}).get(key)
        if value is not None:
            if isinstance(value, (list, tuple)):
                value = ",".join(map(str, value))
            parts.append(f"--data-option {key}={value}")
    return " ".join(parts) + " --method rrr --out RUN_DIR"
