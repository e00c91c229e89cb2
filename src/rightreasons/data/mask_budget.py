"""Partial and corrupted annotations of any dataset's training split: how much each mask buys, and what a
wrong one costs. ``apply_mask_budget(splits, seed=0, ...)``, or the data options of every dataset
(``load_dataset`` applies them after loading and after ``spurious=...``, with the dataset's seed).

Only the training split changes; val and test are returned as loaded. "Annotated" means ``has_mask``
True. An annotation removed here leaves its example with ``has_mask`` False and an empty mask.

- ``annotated_fraction=P`` (P in [0, 1]): of each class's annotated training examples, keep round(P * n)
  (halves up) and remove the others' annotations.
- ``annotated_count=K``: keep exactly K annotated examples, spread over the classes as evenly as possible
  (per-class counts differ by at most one, unless a class runs out of annotated examples).

  Both take prefixes of one seeded order: every class's annotated examples in a seeded random order, and the
  classes interleaved round by round (round r holds the r-th example of every class that has one, the
  classes in a seeded order per round). So with the same seed a larger budget keeps a superset of a
  smaller one's examples, and ``annotated_count`` and ``annotated_fraction`` draw from the same order.
  At most one of the two may be given.
- ``mask_corruption=KIND[:AMOUNT]``, applied to the annotations kept after the budget. Every kind but
  ``drop`` (which takes any data) needs image data (N, C, H, W) whose annotated masks are the same in every
  channel (the spatial mask is corrupted once and copied to every channel):

  - ``dilate[:a]`` (a = 1): binary dilation with the (2a+1) x (2a+1) square.
  - ``shrink[:a]`` (a = 1): binary erosion with that square; pixels outside the image count as unmasked,
    so a mask touching the border shrinks from it too (scipy's ``binary_erosion`` with ``border_value=0``).
  - ``shift[:a]`` (a = 1): the mask translated by a pixels up, down, left or right (drawn per example),
    what leaves the image is lost, the vacated pixels are 0.
  - ``drop[:p]`` (p = 0.5): each annotation removed with probability p.
  - ``random``: the mask's pixels moved as one piece to a random place: its bounding box's top-left corner
    drawn uniformly among the positions where the box fits (same shape, same area).

  The random draws are made for every training example, annotated or not, so how an example is corrupted
  does not depend on the budget.

Randomness: numpy generators of their own, from (seed, "mask_budget"): one stream for the budget order and
one for the corruption. ``info["mask_budget"]`` records what was applied.
"""

from __future__ import annotations

import copy
import math
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .dataset import DataSplits, ExplanationDataset
from .streaming import StreamingImageDataset
from .text.dataset import TextDataset

#: the data options read here
OPTIONS = ("annotated_fraction", "annotated_count", "mask_corruption")
#: option names that are taken to be meant for this module (a typo among them is refused here)
PREFIXES = ("annotated_", "mask_corruption")
#: corruption kinds and their default amounts (None: takes no amount)
KINDS = {"dilate": 1, "shrink": 1, "shift": 1, "drop": 0.5, "random": None}
#: the largest pixel amount accepted (far beyond any image)
MAX_PIXELS = 100_000
#: the four shift directions (row, column)
DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _fraction(source: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0 <= value <= 1:
        raise UserError(f"{source}: option annotated_fraction must be a number in [0, 1], got {value!r}")
    return float(value)


def parse_corruption(source: str, value) -> tuple[str, float | int | None] | None:
    """``"KIND[:AMOUNT]"`` -> (kind, amount with the kind's default), None for None / ``"none"``."""
    if value is None or value == "none" or value is False:
        return None
    if not isinstance(value, str):
        raise UserError(f"{source}: option mask_corruption must be KIND[:AMOUNT] with KIND one of "
                        f"{', '.join(KINDS)}, got {value!r}")
    kind, sep, amount = value.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise UserError(f"{source}: option mask_corruption: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    if not sep:
        return kind, KINDS[kind]
    if KINDS[kind] is None:
        raise UserError(f"{source}: option mask_corruption: {kind} takes no amount, got {value!r}")
    text = amount.strip()
    if kind == "drop":
        try:
            p = float(text)
        except ValueError:
            p = math.nan
        if not 0 <= p <= 1:
            raise UserError(f"{source}: option mask_corruption: drop takes a probability in [0, 1], got {text!r}")
        return kind, p
    if not text.isdigit() or int(text) > MAX_PIXELS:
        raise UserError(f"{source}: option mask_corruption: {kind} takes a whole number of pixels in "
                        f"[0, {MAX_PIXELS}], got {text!r}")
    return kind, int(text)


def check_options(source: str = "mask_budget", annotated_fraction=None, annotated_count=None,
                  mask_corruption=None) -> dict:
    """The options of :func:`apply_mask_budget`, checked (one-line errors naming the option)."""
    if annotated_fraction is not None and annotated_count is not None:
        raise UserError(f"{source}: give annotated_fraction or annotated_count, not both")
    if annotated_fraction is not None:
        annotated_fraction = _fraction(source, annotated_fraction)
    if annotated_count is not None and (isinstance(annotated_count, bool) or not isinstance(annotated_count, int)
                                        or annotated_count < 0):
        raise UserError(f"{source}: option annotated_count must be a whole number >= 0, got {annotated_count!r}")
    corruption = parse_corruption(source, mask_corruption)
    return {"annotated_fraction": annotated_fraction, "annotated_count": annotated_count,
            "mask_corruption": None if corruption is None else
            corruption[0] if corruption[1] is None else f"{corruption[0]}:{corruption[1]}"}


def mask_budget_options(source: str, options: dict) -> tuple[dict, dict | None]:
    """Split the data options read here (OPTIONS) from the dataset's own: (the dataset's options, the checked
    options of :func:`apply_mask_budget`, or None when none is set). An option that starts like one of them
    (``annotated_*``, ``mask_corruption*``) but is not one is refused, naming it."""
    mine = {k: v for k, v in options.items() if k.startswith(PREFIXES)}
    unknown = sorted(set(mine) - set(OPTIONS))
    if unknown:
        raise UserError(f"{source}: unknown option {unknown[0]}; known: {', '.join(OPTIONS)}")
    rest = {k: v for k, v in options.items() if k not in mine}
    checked = check_options(source, **mine)
    if all(v is None for v in checked.values()):
        return rest, None
    return rest, checked


# ------------------------------------------------------------------------------------------------ the budget


def budget_order(y: np.ndarray, annotated: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """(the annotated examples' indices in the nested budget order, {class: its examples in that order});
    see the module docstring."""
    per_class = {}
    for k in np.unique(y[annotated]).tolist():
        idx = np.flatnonzero(annotated & (y == k))
        per_class[k] = idx[rng.permutation(len(idx))]
    classes = np.array(sorted(per_class))
    rounds = max((len(v) for v in per_class.values()), default=0)
    order = []
    for r in range(rounds):
        for k in classes[rng.permutation(len(classes))].tolist():
            if r < len(per_class[k]):
                order.append(per_class[k][r])
    return np.array(order, dtype=np.int64), per_class


def _round(fraction: float, n: int) -> int:
    return int(math.floor(fraction * n + 0.5))


def _kept(opts: dict, y: np.ndarray, annotated: np.ndarray, rng: np.random.Generator, name: str) -> np.ndarray:
    """bool (N,): the annotated examples whose annotation the budget keeps."""
    order, per_class = budget_order(y, annotated, rng)
    keep = np.zeros(len(y), dtype=bool)
    if opts["annotated_fraction"] is not None:
        for idx in per_class.values():
            keep[idx[:_round(opts["annotated_fraction"], len(idx))]] = True
    elif opts["annotated_count"] is not None:
        if opts["annotated_count"] > len(order):
            raise UserError(f"mask_budget: option annotated_count={opts['annotated_count']}: {name} has only "
                            f"{len(order)} annotated training examples")
        keep[order[:opts["annotated_count"]]] = True
    else:
        keep = annotated.copy()
    return keep


# ------------------------------------------------------------------------------------------------ corruptions


def dilate(masks: torch.Tensor, a: int) -> torch.Tensor:
    """bool (N, H, W): binary dilation of ``masks`` with the (2a+1) x (2a+1) square."""
    a = min(a, max(masks.shape[1:], default=0))  # a larger square changes nothing more
    if a == 0 or not len(masks):
        return masks.clone()
    m = masks.float().unsqueeze(1)
    return F.max_pool2d(F.pad(m, (a, a, a, a), value=0.0), 2 * a + 1, stride=1).squeeze(1) > 0.5


def shrink(masks: torch.Tensor, a: int) -> torch.Tensor:
    """bool (N, H, W): binary erosion of ``masks`` with the (2a+1) x (2a+1) square, outside the image unmasked."""
    a = min(a, max(masks.shape[1:], default=0))
    if a == 0 or not len(masks):
        return masks.clone()
    m = masks.float().unsqueeze(1)
    return -F.max_pool2d(-F.pad(m, (a, a, a, a), value=0.0), 2 * a + 1, stride=1).squeeze(1) > 0.5


def shift(masks: torch.Tensor, a: int, directions: np.ndarray) -> torch.Tensor:
    """bool (N, H, W): mask n translated by ``a`` pixels in DIRECTIONS[directions[n]], zero fill."""
    n, h, w = masks.shape
    out = torch.zeros_like(masks)
    for d, (dr, dc) in enumerate(DIRECTIONS):
        rows = torch.from_numpy(np.flatnonzero(directions == d))
        if not len(rows) or (dr and a >= h) or (dc and a >= w):
            continue
        r, c = dr * a, dc * a
        out[rows, max(r, 0):h + min(r, 0), max(c, 0):w + min(c, 0)] = \
            masks[rows, max(-r, 0):h + min(-r, 0), max(-c, 0):w + min(-c, 0)]
    return out


def relocate(masks: torch.Tensor, u: np.ndarray) -> torch.Tensor:
    """bool (N, H, W): each mask's pixels moved as one piece so that its bounding box's top-left corner is at
    (floor(u[n, 0] * (H - bh + 1)), floor(u[n, 1] * (W - bw + 1))), bh x bw the box (u in [0, 1))."""
    n, h, w = masks.shape
    out = torch.zeros_like(masks)
    row, r, c = masks.nonzero(as_tuple=True)
    if not len(row):
        return out
    rmin = torch.full((n,), h, dtype=torch.long).scatter_reduce(0, row, r, "amin")
    rmax = torch.full((n,), -1, dtype=torch.long).scatter_reduce(0, row, r, "amax")
    cmin = torch.full((n,), w, dtype=torch.long).scatter_reduce(0, row, c, "amin")
    cmax = torch.full((n,), -1, dtype=torch.long).scatter_reduce(0, row, c, "amax")
    u = torch.from_numpy(np.asarray(u, dtype=np.float64))
    slack_r, slack_c = (h - (rmax - rmin)).clamp_min(1), (w - (cmax - cmin)).clamp_min(1)
    top = torch.minimum((u[:, 0] * slack_r).floor().long(), slack_r - 1)
    left = torch.minimum((u[:, 1] * slack_c).floor().long(), slack_c - 1)
    out[row, top[row] + r - rmin[row], left[row] + c - cmin[row]] = True
    return out


def _spatial(ds: ExplanationDataset, rows: np.ndarray) -> torch.Tensor:
    """bool (len(rows), H, W): the annotated rows' masks, refused unless they are the same in every channel."""
    if isinstance(ds, TextDataset) or ds.x.dim() != 4:
        raise UserError(f"mask_corruption: {ds.name} has inputs of shape {tuple(ds.x.shape)}; corrupting masks "
                        "needs images (N, C, H, W)")
    masks = ds.mask[torch.from_numpy(rows)]
    differ = (masks != masks[:, :1]).flatten(1).any(1)
    if bool(differ.any()):
        first = int(rows[int(torch.nonzero(differ)[0])])
        raise UserError(f"mask_corruption: {ds.name} example {first} has a mask that differs between channels; "
                        "corruption needs one spatial mask per image, the same in every channel")
    return masks[:, 0]


def corrupt(ds: ExplanationDataset, kind: str, amount, rows: np.ndarray, rng: np.random.Generator
            ) -> tuple[torch.Tensor | None, np.ndarray]:
    """(the new spatial masks (len(rows), H, W) of the annotated ``rows`` of ``ds``, or None for ``drop``; the
    rows whose annotation is dropped). The random draws cover every example of ``ds`` (module docstring)."""
    n = len(ds)
    if kind == "drop":
        return None, rows[rng.random(n)[rows] < amount]
    masks = _spatial(ds, rows)
    if kind == "dilate":
        new = dilate(masks, amount)
    elif kind == "shrink":
        new = shrink(masks, amount)
    elif kind == "shift":
        new = shift(masks, amount, rng.integers(0, len(DIRECTIONS), n)[rows])
    else:
        new = relocate(masks, rng.random((n, 2))[rows])
    return new, np.zeros(0, dtype=np.int64)


# ------------------------------------------------------------------------------------------------ applying


def _check_train(ds) -> None:
    if isinstance(ds, StreamingImageDataset):
        raise UserError(f"mask_budget: {ds.name} is a streaming dataset (stream=true); load it in memory to "
                        "change its annotations")
    if not isinstance(ds, (ExplanationDataset, TextDataset)):
        raise UserError(f"mask_budget: the training split is a {type(ds).__name__}, not an in-memory dataset")


def apply_mask_budget(splits: DataSplits, seed: int = 0, annotated_fraction=None, annotated_count=None,
                      mask_corruption=None) -> DataSplits:
    """``splits`` with the training split's annotations cut to a budget and/or corrupted (see the module
    docstring); val and test are the same objects as given."""
    opts = check_options("mask_budget", annotated_fraction, annotated_count, mask_corruption)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"mask_budget: seed must be a non-negative integer, got {seed!r}")
    train = splits.train
    _check_train(train)
    order_rng, corrupt_rng = (np.random.default_rng(child) for child in
                              np.random.SeedSequence([int(seed), zlib.crc32(b"mask_budget")]).spawn(2))
    y = train.y.numpy()
    annotated = train.has_mask.numpy().astype(bool)
    keep = _kept(opts, y, annotated, order_rng, train.name)
    record = {"seed": int(seed), **opts, "annotated_before": int(annotated.sum())}
    new, rows = None, np.flatnonzero(keep)
    if opts["mask_corruption"] is not None:
        kind, amount = parse_corruption("mask_budget", opts["mask_corruption"])
        new, dropped = corrupt(train, kind, amount, rows, corrupt_rng)
        keep[dropped] = False
        record["corruption"] = {"kind": kind, "amount": amount, "dropped": int(len(dropped)), "changed_masks": 0}
    removed = annotated & ~keep
    mask = train.mask.clone(memory_format=torch.contiguous_format)
    mask[torch.from_numpy(removed)] = False
    if new is not None and len(rows):
        index = torch.from_numpy(rows)
        record["corruption"]["changed_masks"] = int((new != mask[index, 0]).flatten(1).any(1).sum())
        mask[index] = new.unsqueeze(1).expand(-1, mask.shape[1], -1, -1)
    out = copy.copy(train)
    out.mask, out.has_mask = mask, torch.from_numpy(keep)
    record["annotated_after"] = int(keep.sum())
    record["annotated_per_class"] = {str(k): int(keep[y == k].sum()) for k in np.unique(y).tolist()}
    return DataSplits(out, splits.val, splits.test, {**splits.info, "mask_budget": record})
