"""A validation split whose shortcut is broken, built from the masks the user already gave.

Selecting the epoch on an ordinary validation split rewards the shortcut (it holds there as in training);
selecting on test looks at test. ``break_shortcut(dataset, how, seed)`` returns a copy of a split in which
the masked region of every annotated example is replaced by content that carries no label information:

- ``random``: images get values drawn uniformly from the data range inside the mask (per pixel and
  channel); text gets random vocabulary words (ids 2 .. V - 1) at the masked tokens.
- ``swap``: the masked region is copied from an example of another class (chosen at random among the
  annotated ones): an image takes that example's pixels inside its own mask; a document takes that
  example's masked tokens, in order, at its own masked positions (cycled when it has fewer).

Labels, groups, masks and annotation flags are kept; un-annotated examples are unchanged. Randomness
comes from a numpy generator seeded by ``seed``; the input split is not modified. What ``fit`` evaluates
for ``select=val_broken_accuracy`` / ``val_broken_worst_group_accuracy``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import UserError
from .dataset import ExplanationDataset

BREAKS = ("random", "swap")


def _annotated(dataset) -> torch.Tensor:
    return dataset.has_mask & dataset.mask.flatten(1).any(1)


def has_annotations(dataset) -> bool:
    """Whether ``dataset`` has an annotated example with a non-empty mask (something to break)."""
    return bool(_annotated(dataset).any())


def _partners(y: np.ndarray, rows: np.ndarray, rng: np.random.Generator, name: str) -> np.ndarray:
    """For each of ``rows``, an annotated example of another class (uniformly among them)."""
    partners = np.empty(len(rows), dtype=np.int64)
    for k, row in enumerate(rows):
        others = rows[y[rows] != y[row]]
        if not len(others):
            raise UserError(f"{name}: breaking the shortcut by swap needs annotated examples of another class "
                            f"than {int(y[row])}")
        partners[k] = others[rng.integers(len(others))]
    return partners


def break_shortcut(dataset, how: str = "random", seed: int = 0):
    """A copy of ``dataset`` (in memory: images or text) with its masked regions replaced (module docstring)."""
    if how not in BREAKS:
        raise UserError(f"breaking the shortcut: how must be one of {', '.join(BREAKS)}, got {how!r}")
    if getattr(dataset, "is_text", False):
        return _break_text(dataset, how, seed)
    if not isinstance(dataset, ExplanationDataset):
        raise UserError(f"{dataset.name}: a validation split with the shortcut broken needs the data in memory "
                        "(a streaming folder cannot be rewritten); select on the ordinary validation split")
    rows = torch.nonzero(_annotated(dataset)).flatten().numpy()
    if not len(rows):
        raise UserError(f"{dataset.name}: no annotated example to break the shortcut of (the validation split has "
                        "no masks); select on the ordinary validation split")
    rng = np.random.default_rng([int(seed), 7_919])
    x = dataset.x.clone()
    mask = dataset.mask[rows].to(x.dtype)
    if how == "random":
        low, high = dataset.input_range
        if not (math.isfinite(low) and math.isfinite(high)):
            raise UserError(f"{dataset.name}: the data range ({low}, {high}) is not finite, so random values cannot "
                            "be drawn in it; break the shortcut by swap")
        noise = torch.from_numpy(rng.uniform(low, high, size=tuple(mask.shape))).to(x.dtype)
        x[rows] = x[rows] * (1 - mask) + noise * mask
    else:
        partners = _partners(dataset.y.numpy(), rows, rng, dataset.name)
        x[rows] = x[rows] * (1 - mask) + dataset.x[partners] * mask
    return ExplanationDataset(x, dataset.y, dataset.mask, dataset.group, dataset.has_mask,
                              num_classes=dataset.num_classes, num_groups=dataset.num_groups,
                              name=f"{dataset.name} (shortcut broken: {how})", input_range=dataset.input_range)


def _break_text(dataset, how: str, seed: int):
    from .text.dataset import TextDataset

    rows = torch.nonzero(_annotated(dataset)).flatten().numpy()
    if not len(rows):
        raise UserError(f"{dataset.name}: no annotated document to break the shortcut of; select on the "
                        "ordinary validation split")
    rng = np.random.default_rng([int(seed), 7_919])
    ids = dataset.ids.clone()
    partners = _partners(dataset.y.numpy(), rows, rng, dataset.name) if how == "swap" else None
    for k, row in enumerate(rows):
        positions = torch.nonzero(dataset.mask[row]).flatten()
        if how == "random":
            if len(dataset.vocab) <= 2:
                raise UserError(f"{dataset.name}: the vocabulary has no word to draw")
            ids[row, positions] = torch.from_numpy(rng.integers(2, len(dataset.vocab), size=len(positions)))
        else:
            source = dataset.ids[partners[k], dataset.mask[partners[k]]]
            ids[row, positions] = source[torch.arange(len(positions)) % len(source)]
    changed = set(rows.tolist())
    words = [dataset.vocab.decode(r[r != 0].tolist()) if i in changed else w
             for i, (r, w) in enumerate(zip(ids, dataset.words))]
    return TextDataset(ids, dataset.y, dataset.vocab, mask=dataset.mask, group=dataset.group,
                       has_mask=dataset.has_mask, rationale=dataset.rationale, words=words,
                       num_classes=dataset.num_classes, num_groups=dataset.num_groups,
                       name=f"{dataset.name} (shortcut broken: {how})", class_names=dataset.class_names)
