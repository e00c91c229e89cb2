"""A label-correlated patch stamped on any image dataset's training split: the spurious-feature protocol of
Tao & Shokri ("Machine Learning from Explanations", ICML 2025) on CUB, and a quick stress test of your own
data. ``inject_spurious(splits, seed=0, shape="square", ...)``, or the data options
``spurious=square spurious_size=16 spurious_annotated=0.1 ...`` of every dataset (``load_dataset`` applies
it after loading, with the dataset's seed).

Rule, in the training split only: of each class's images, ``correlation`` (default 1.0; the count rounded
to the nearest integer, halves up) are drawn with the seed and stamped with the class's patch; of each class's
stamped images, ``annotated`` (default 1.0, rounded the same way) are drawn and annotated, their mask
(1 = ignore) exactly the stamped pixels. Every other training example is un-annotated (``has_mask`` False,
an empty mask): the dataset's own training masks are replaced. Which images are stamped does not depend on
``annotated``, nor which are annotated on ``position``: each draw has a generator of its own.

- ``shape``: ``square`` (every pixel of the s x s patch), ``circle`` (pixels (i, j) of the patch with
  (i + 0.5 - s/2)^2 + (j + 0.5 - s/2)^2 <= (s/2)^2) or ``cross`` (rows and columns i with
  |i + 0.5 - s/2| < t/2, the bar width t = max(1, s // 3), made one larger if s - t is odd).
- ``size``: the side s in pixels (default max(1, min(H, W) // 8)).
- ``position``: ``top-left`` (default), ``top-right``, ``bottom-left``, ``bottom-right`` (flush with the
  corner) or ``random`` (a top-left corner drawn per image, the patch inside the image).
- colours: class k of K gets hue k / K at full saturation and value (RGB), or grey level k / (K - 1)
  (one channel), each channel value c in [0, 1] written as low + c * (high - low) of the dataset's
  ``input_range`` (the colour itself for pixels in [0, 1]).
- ``test``: ``clean`` (default): val and test are left as loaded (inputs, labels, masks and annotation flags
  unchanged); ``random``: every val and test image is stamped with the patch of a class drawn uniformly
  from all K (so a shortcut model is mostly wrong), its mask the stamped pixels.

Groups, in every split: ``2 * g + p``, g the dataset's group (the label for CUB and for folders without a
group column) and p = 1 when the image carries its own class's patch; names ``<group>/patched`` and
``<group>/unpatched``. Only in-memory image datasets (N, C, H, W), C 1 or 3, with a finite input range
are stamped; a streaming split (``stream=true``) is refused.
"""

from __future__ import annotations

import colorsys
import math
import zlib

import numpy as np
import torch

from ..errors import UserError
from .dataset import DataSplits, ExplanationDataset
from .streaming import StreamingImageDataset

SHAPES = ("square", "circle", "cross")
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "random")
TESTS = ("clean", "random")
DEFAULTS = {"shape": "square", "size": None, "position": "top-left", "correlation": 1.0, "annotated": 1.0,
            "test": "clean"}
#: the data option that turns the transform on, and the prefix of its other options
OPTION = "spurious"


def _fraction(source: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0 <= value <= 1:
        raise UserError(f"{source}: option {key} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_options(source: str = "spurious", prefix: str = "", **options) -> dict:
    """The options of :func:`inject_spurious` with their defaults, checked (errors name
    ``prefix + key``). ``size`` is checked against the images later."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        known = ", ".join(prefix + k if prefix else k for k in DEFAULTS)
        raise UserError(f"{source}: unknown option {prefix}{unknown[0]}; known: {known}")
    opts = {**DEFAULTS, **options}
    for key, choices in (("shape", SHAPES), ("position", POSITIONS), ("test", TESTS)):
        if opts[key] not in choices:
            name = OPTION if prefix and key == "shape" else prefix + key
            raise UserError(f"{source}: option {name} must be one of {', '.join(choices)}, got {opts[key]!r}")
    for key in ("correlation", "annotated"):
        opts[key] = _fraction(source, prefix + key, opts[key])
    size = opts["size"]
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise UserError(f"{source}: option {prefix}size must be a positive integer (pixels), got {size!r}")
    return opts


def spurious_options(source: str, options: dict) -> tuple[dict, dict | None]:
    """Split the data options ``spurious`` and ``spurious_*`` from the dataset's own: (the dataset's options,
    the checked options of :func:`inject_spurious`, or None when ``spurious`` is unset or ``none``)."""
    rest = {k: v for k, v in options.items() if k != OPTION and not k.startswith(OPTION + "_")}
    mine = {k[len(OPTION) + 1:]: v for k, v in options.items() if k.startswith(OPTION + "_")}
    unknown = sorted(set(mine) - set(DEFAULTS) - {"shape"})
    if unknown or "shape" in mine:
        known = ", ".join([OPTION] + [f"{OPTION}_{k}" for k in DEFAULTS if k != "shape"])
        raise UserError(f"{source}: unknown option {OPTION}_{(unknown or ['shape'])[0]}; known: {known}")
    shape = options.get(OPTION)
    if shape in (None, "none", False):
        if mine:
            first = sorted(mine)[0]
            raise UserError(f"{source}: option {OPTION}_{first} needs {OPTION}={'|'.join(SHAPES)}")
        return rest, None
    return rest, check_options(source, OPTION + "_", shape=shape, **mine)


def shape_mask(shape: str, s: int) -> np.ndarray:
    """bool (s, s): the pixels of the patch ``shape`` (see the module docstring)."""
    centre = (np.arange(s) + 0.5) - s / 2
    if shape == "square":
        return np.ones((s, s), dtype=bool)
    if shape == "circle":
        return centre[:, None] ** 2 + centre[None, :] ** 2 <= (s / 2) ** 2
    t = max(1, s // 3)
    t += (s - t) % 2
    bar = np.abs(centre) < t / 2
    return bar[:, None] | bar[None, :]


def class_colours(num_classes: int, channels: int) -> np.ndarray:
    """(K, C) channel values in [0, 1]: hues k / K (RGB) or grey levels k / (K - 1) (one channel)."""
    if channels == 3:
        return np.array([colorsys.hsv_to_rgb(k / num_classes, 1.0, 1.0) for k in range(num_classes)])
    return (np.arange(num_classes) / max(1, num_classes - 1))[:, None]


def _count(fraction: float, n: int) -> int:
    return int(math.floor(fraction * n + 0.5))


def _corners(position: str, n: int, hw, s: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) top-left corners (row, column) of the patches."""
    h, w = hw
    if position == "random":
        return np.stack([rng.integers(0, h - s + 1, n), rng.integers(0, w - s + 1, n)], axis=1)
    row = 0 if position.startswith("top") else h - s
    col = 0 if position.endswith("left") else w - s
    return np.tile([row, col], (n, 1))


def _stamp(x: torch.Tensor, mask: torch.Tensor, rows, corners, colours: torch.Tensor, which, patch, annotate):
    """Stamp example ``rows[k]`` with colour ``colours[which[k]]`` at ``corners[k]`` in place; where
    ``annotate[k]``, its mask becomes the stamped pixels."""
    s = patch.shape[0]
    for i, (r, c), k, a in zip(rows.tolist(), corners.tolist(), which.tolist(), annotate.tolist()):
        region = x[i, :, r:r + s, c:c + s]
        region[:, patch] = colours[k][:, None].to(x.dtype)
        if a:
            mask[i, :, r:r + s, c:c + s] = patch


def _check_split(ds, what: str) -> None:
    if isinstance(ds, StreamingImageDataset):
        raise UserError(f"spurious: {ds.name} is a streaming dataset (stream=true); load it in memory to stamp "
                        "a patch")
    if not isinstance(ds, ExplanationDataset):
        raise UserError(f"spurious: the {what} split is a {type(ds).__name__}, not an in-memory ExplanationDataset")
    if ds.x.dim() != 4 or ds.x.shape[1] not in (1, 3):
        raise UserError(f"spurious: {ds.name} has inputs of shape {tuple(ds.x.shape)}; a patch needs images "
                        "(N, C, H, W) with 1 or 3 channels")
    if not all(math.isfinite(v) for v in ds.input_range):
        raise UserError(f"spurious: {ds.name} has the unbounded input range {ds.input_range}; a patch's colour "
                        "needs a finite one (image data)")


def _dataset(ds: ExplanationDataset, x, mask, group, has_mask) -> ExplanationDataset:
    return ExplanationDataset(x, ds.y, mask, group, has_mask, num_classes=ds.num_classes,
                              num_groups=2 * ds.num_groups, name=ds.name, input_range=ds.input_range)


def inject_spurious(splits: DataSplits, seed: int = 0, **options) -> DataSplits:
    """``splits`` with a class-coloured patch stamped on the training images (see the module docstring for
    the rule and the options ``shape``, ``size``, ``position``, ``correlation``, ``annotated``, ``test``)."""
    opts = check_options(**options)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"spurious: seed must be a non-negative integer, got {seed!r}")
    for what in ("train", "val", "test"):
        _check_split(splits.split(what), what)
    train = splits.train
    (_, c, h, w), k_classes = train.x.shape, train.num_classes
    for ds in (splits.val, splits.test):
        if ds.x.shape[1:] != train.x.shape[1:]:
            raise UserError(f"spurious: {ds.name} has inputs of shape {tuple(ds.x.shape[1:])}, the training split "
                            f"{tuple(train.x.shape[1:])}")
    s = opts["size"] if opts["size"] is not None else max(1, min(h, w) // 8)
    if s > min(h, w):
        raise UserError(f"spurious: option size {s} is larger than the {h}x{w} images")
    patch_np = shape_mask(opts["shape"], s)
    patch = torch.from_numpy(patch_np)
    low, high = train.input_range
    unit = class_colours(k_classes, c)
    colours = torch.from_numpy(low + unit * (high - low)).float()
    draws = [np.random.default_rng(child) for child in
             np.random.SeedSequence([int(seed), zlib.crc32(b"spurious")]).spawn(5)]
    pick, annotate_rng, where, test_classes, test_where = draws

    y = train.y.numpy()
    stamped = np.zeros(len(y), dtype=bool)
    annotated = np.zeros(len(y), dtype=bool)
    for k in range(k_classes):
        idx = np.flatnonzero(y == k)
        chosen = np.sort(idx[pick.permutation(len(idx))[:_count(opts["correlation"], len(idx))]])
        stamped[chosen] = True
        keep = annotate_rng.permutation(len(chosen))[:_count(opts["annotated"], len(chosen))]
        annotated[chosen[keep]] = True
    corners = _corners(opts["position"], len(y), (h, w), s, where)
    x, mask = train.x.clone(), torch.zeros_like(train.mask)
    rows = np.flatnonzero(stamped)
    _stamp(x, mask, rows, corners[rows], colours, y[rows], patch, annotated[rows])
    out = {"train": _dataset(train, x, mask, 2 * train.group + torch.from_numpy(stamped).long(),
                             torch.from_numpy(annotated))}
    for name in ("val", "test"):
        ds = splits.split(name)
        if opts["test"] == "clean":
            out[name] = _dataset(ds, ds.x, ds.mask, 2 * ds.group, ds.has_mask)
            continue
        n = len(ds)
        which = test_classes.integers(0, k_classes, n)
        corners = _corners(opts["position"], n, (h, w), s, test_where)
        x, mask = ds.x.clone(), torch.zeros_like(ds.mask)
        _stamp(x, mask, np.arange(n), corners, colours, which, patch, np.ones(n, dtype=bool))
        own = torch.from_numpy(which == ds.y.numpy()).long()
        out[name] = _dataset(ds, x, mask, 2 * ds.group + own, torch.ones(n, dtype=torch.bool))

    names = splits.info.get("groups")
    if not isinstance(names, list) or len(names) != train.num_groups:
        names = [str(g) for g in range(train.num_groups)]
    groups = [f"{g}/{p}" for g in names for p in ("unpatched", "patched")]
    record = {**opts, "size": s, "seed": int(seed), "stamped": int(stamped.sum()),
              "annotated_examples": int(annotated.sum()), "colours": colours.tolist()}
    return DataSplits(out["train"], out["val"], out["test"], {**splits.info, "groups": groups, "spurious": record})
