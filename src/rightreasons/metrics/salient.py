"""Sensitivity to core and spurious features (Singla & Feizi, ICLR 2022; Singla, Moayeri & Feizi, 2022),
on data with soft masks of both (``salient-imagenet:IMAGES,MASKS``).

- **core accuracy**: accuracy when Gaussian noise N(0, sigma^2) is added inside the spurious masks, the soft
  mask as its weight, ``x + m_spurious * noise``: a model that uses its core features keeps it high;
- **spurious accuracy**: the same with the noise inside the core masks;
- **relative core sensitivity** (Singla, Moayeri & Feizi 2022, "Core Risk Minimization using Salient
  ImageNet"): with a_C the core and a_S the spurious accuracy and a = (a_C + a_S) / 2,
  RCS = (a_C - a_S) / (2 min(a, 1 - a)), the gap between them over the largest gap their mean allows
  (in [-1, 1]; 0 when a is 0 or 1, as the published implementations return).

Core accuracy counts the examples with a spurious mask, spurious accuracy those with a core mask. Both are
averaged over classes (the mean of per-class accuracies, as the authors report them; ``average="example"``:
over examples). ``sigma`` (default 0.25) is in pixel units, [0, 1]: on normalised inputs (the dataset's
``normalization``, mean and std per channel) the noise is divided by the channel's std. Noisy inputs are
clamped to the data range (per channel for normalised data, else ``dataset.input_range``). Noise comes only
from the ``generator`` given (default: a CPU generator seeded 0; never the global RNG), drawn on the CPU
and moved to the model's device, one draw of the batch's shape per batch and trial, shared by the core and
spurious inputs in :func:`salient_metrics` (the same numbers :func:`core_accuracy` and
:func:`spurious_accuracy` draw with that seed). The model runs in eval mode (restored afterwards).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import nn

from ..data.dataset import capped_batch_size
from ..devices import model_device, rand_like
from ..errors import UserError
from ..ops.modes import eval_mode
from .logits import check_logits, checked_outputs

DEFAULT_SIGMA = 0.25
AVERAGES = ("class", "example")


def relative_core_sensitivity(core_accuracy: float, spurious_accuracy: float) -> float:
    """(a_C - a_S) / (2 min(a, 1 - a)) with a = (a_C + a_S) / 2; 0 when a is 0 or 1; NaN if either is NaN."""
    values = []
    for name, v in (("core_accuracy", core_accuracy), ("spurious_accuracy", spurious_accuracy)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isnan(v) or 0 <= v <= 1):
            raise UserError(f"relative core sensitivity: {name} must be a number in [0, 1], got {v!r}")
        values.append(float(v))
    a_core, a_spurious = values
    if math.isnan(a_core) or math.isnan(a_spurious):
        return math.nan
    mean = (a_core + a_spurious) / 2
    gap = 2 * min(mean, 1 - mean)
    return 0.0 if gap == 0 else (a_core - a_spurious) / gap


def noisy_inputs(x: torch.Tensor, soft_mask: torch.Tensor, noise: torch.Tensor, low, high,
                 std=None) -> torch.Tensor:
    """``x + soft_mask * noise`` (noise divided by ``std`` per channel if given) clamped to [low, high]
    (numbers or per-channel sequences)."""
    def per_channel(v):
        t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
        return t.reshape(1, -1, *([1] * (x.dim() - 2))) if t.dim() == 1 and x.dim() > 2 else t

    step = soft_mask.to(x.dtype) * noise
    if std is not None:
        step = step / per_channel(std)
    return torch.minimum(torch.maximum(x + step, per_channel(low)), per_channel(high))


def _bounds(dataset):
    """(low, high, std) of the noise: per channel through the dataset's normalisation, else its input range."""
    norm = getattr(dataset, "normalization", None)
    if norm is None:
        low, high = dataset.input_range
        return float(low), float(high), None
    mean, std = (list(map(float, v)) for v in norm)
    return [-m / s for m, s in zip(mean, std)], [(1 - m) / s for m, s in zip(mean, std)], std


def _check(dataset, sigma, trials, average) -> None:
    if not callable(getattr(dataset, "soft_batch", None)):
        raise UserError(f"dataset {getattr(dataset, 'name', '?')!r} has no core and spurious soft masks (load "
                        "salient-imagenet:IMAGES,MASKS, or build a SalientImageNetDataset)")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise UserError(f"salient metrics: sigma must be a finite number >= 0, got {sigma!r}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserError(f"salient metrics: trials must be an integer >= 1, got {trials!r}")
    if average not in AVERAGES:
        raise UserError(f"salient metrics: average must be one of {', '.join(AVERAGES)}, got {average!r}")


def _counts(model: nn.Module, dataset, sigma: float, generator: Optional[torch.Generator], trials: int,
            regions: tuple[str, ...], batch_size: int) -> dict:
    """Per region ("clean", "core", "spurious"): (correct per class, counted per class), as float64 tensors."""
    k = dataset.num_classes
    out = {r: (torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)) for r in regions}
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    low, high, std = _bounds(dataset)
    where = f"dataset {dataset.name!r}"
    device = model_device(model)

    def tally(region, logits, y, keep):
        correct, total = out[region]
        y, keep = y.cpu(), keep.cpu()
        hit = (logits.argmax(1).cpu() == y) & keep
        correct += torch.bincount(y[hit], minlength=k)[:k].double()
        total += torch.bincount(y[keep], minlength=k)[:k].double()

    with checked_outputs(model, k, where), eval_mode(model), torch.no_grad():
        for index in dataset.index_batches(capped_batch_size(dataset, batch_size)):
            batch, soft = dataset.soft_batch(index)
            x, y = batch.x.to(device), batch.y.to(device)
            if "clean" in regions:
                tally("clean", check_logits(model(x), k, where, len(y)), y, torch.ones_like(y, dtype=torch.bool))
            masks = {"core": (soft.spurious, soft.has_spurious), "spurious": (soft.core, soft.has_core)}
            for _ in range(trials):
                noise = rand_like(x, generator, normal=True) * sigma
                for region in ("core", "spurious"):
                    if region in regions:
                        m, keep = masks[region]
                        noisy = noisy_inputs(x, m.to(device), noise, low, high, std)
                        tally(region, check_logits(model(noisy), k, where, len(y)), y, keep.bool())
    return out


def _finish(counts, average: str, what: str, name: str) -> float:
    correct, total = counts
    if float(total.sum()) == 0:
        warnings.warn(f"{what}: no example of dataset {name!r} has the masks it needs; returning NaN", stacklevel=3)
        return math.nan
    if average == "example":
        return float(correct.sum() / total.sum())
    present = total > 0
    return float((correct[present] / total[present]).mean())


def core_accuracy(model: nn.Module, dataset, sigma: float = DEFAULT_SIGMA, generator: Optional[torch.Generator] = None,
                  trials: int = 1, average: str = "class", batch_size: int = 1000) -> float:
    """Accuracy with noise N(0, sigma^2) weighted by the spurious soft masks, over the examples that have one
    (``trials`` draws each)."""
    _check(dataset, sigma, trials, average)
    counts = _counts(model, dataset, float(sigma), generator, trials, ("core",), batch_size)
    return _finish(counts["core"], average, "core_accuracy", dataset.name)


def spurious_accuracy(model: nn.Module, dataset, sigma: float = DEFAULT_SIGMA,
                      generator: Optional[torch.Generator] = None, trials: int = 1, average: str = "class",
                      batch_size: int = 1000) -> float:
    """Accuracy with noise N(0, sigma^2) weighted by the core soft masks, over the examples that have one."""
    _check(dataset, sigma, trials, average)
    counts = _counts(model, dataset, float(sigma), generator, trials, ("spurious",), batch_size)
    return _finish(counts["spurious"], average, "spurious_accuracy", dataset.name)


def salient_metrics(model: nn.Module, dataset, sigma: float = DEFAULT_SIGMA, seed: int = 0, trials: int = 1,
                    average: str = "class", batch_size: int = 1000) -> dict:
    """Clean, core and spurious accuracy (averaged the same way) and the relative core sensitivity, in one
    pass, the noise from a CPU generator seeded ``seed``; with the counts of examples each accuracy used."""
    _check(dataset, sigma, trials, average)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"salient metrics: seed must be a non-negative integer, got {seed!r}")
    counts = _counts(model, dataset, float(sigma), torch.Generator().manual_seed(seed), trials,
                     ("clean", "core", "spurious"), batch_size)
    core = _finish(counts["core"], average, "core_accuracy", dataset.name)
    spurious = _finish(counts["spurious"], average, "spurious_accuracy", dataset.name)
    return {"clean_accuracy": _finish(counts["clean"], average, "clean_accuracy", dataset.name),
            "core_accuracy": core, "spurious_accuracy": spurious,
            "relative_core_sensitivity": relative_core_sensitivity(core, spurious),
            "core_examples": int(counts["core"][1].sum()) // trials,
            "spurious_examples": int(counts["spurious"][1].sum()) // trials,
            "noise_sigma": float(sigma), "noise_trials": trials, "noise_seed": seed, "average": average}
