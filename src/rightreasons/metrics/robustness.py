"""One robustness report of a model: natural accuracy, accuracy under an l_inf PGD attack, and the
attribution robustness of Chen et al. (NeurIPS 2019) at the same radius.

On the first ``max_examples`` examples of a dataset (deterministic): the natural accuracy; the PGD
accuracy, the share still classified correctly after sign-gradient PGD on the cross-entropy in
|x' - x| <= eps (the whole input for ``region="all"``, Madry et al.'s attack; only the effective mask's
features, radius eps * m, for ``region="mask"``), clamped to ``dataset.input_range`` (an example with an
empty box counts as its clean prediction does); and the mean top-k intersection and Kendall tau-b of
IG saliency maps under Ghorbani et al.'s top-k attack (``metrics.attribution_robustness``, with the same
eps and region; only correctly classified examples are attacked). Attack defaults are Chen et al.'s
MNIST evaluation as ``attribution_robustness`` has them (100 steps of 0.01, k = 100, attack_k = 2k,
IG with 50 points); k defaults to 100, at most a quarter of the features (6 for a 5x5 image, where k =
all 25 would make the intersection 1 whatever the attack does).
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Callable, Optional

import torch
from torch import nn

from ..data.dataset import ExplanationDataset, capped_batch_size
from ..devices import model_device
from ..errors import UserError
from ..ops.masked_pgd import masked_pgd
from ..ops.modes import eval_mode
from .attribution_robustness import REGIONS, attribution_robustness
from .logits import check_logits, checked_outputs


def training_eps(method: str, params: dict) -> Optional[float]:
    """The l_inf radius a run trained with: its method's ``eps`` parameter (its default when not given),
    or None for a method without one."""
    from ..methods import create_method

    value = create_method(method, **params).params.get("eps")
    return None if value is None or isinstance(value, bool) else float(value)


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"robustness_report: {name} must be an int >= {low}, got {value!r}")


def robustness_report(
    model: nn.Module,
    dataset: ExplanationDataset,
    eps: float,
    *,
    region: str = "all",
    max_examples: int = 200,
    pgd_steps: int = 20,
    pgd_step_size: Optional[float] = None,
    attack_steps: int = 100,
    step_size: float = 0.01,
    k: Optional[int] = None,
    attack_k: Optional[int] = None,
    ig_steps: int = 50,
    surrogate_beta: Optional[float] = 1.0,
    batch_size: int = 50,
    restarts: int = 1,
    seed: int = 0,
    progress: Optional[Callable[[int, int], None]] = None,
) -> dict:
    """Natural and PGD accuracy, top-k intersection and Kendall tau-b at radius ``eps`` (see the module).

    ``pgd_steps`` sign steps of ``pgd_step_size`` (default 2.5 * eps / pgd_steps) from x for the PGD
    accuracy; ``attack_steps`` of ``step_size``, ``k``, ``attack_k``, ``ig_steps`` and ``surrogate_beta`` are
    the attribution attack's (see ``attribution_robustness``; ``k`` default: see the module), and so are
    ``restarts`` (1: the deterministic attack from x; more: Chen et al.'s random restarts, the batch of
    examples from index i drawing its starts from a generator seeded with ``seed + i``). Examples
    are processed ``batch_size`` at a time and ``progress(done, total)`` is called after each batch.
    Kendall's tau is the mean over batches weighted by their evaluated examples (the overall mean unless
    some maps are constant: NaN taus are left out per batch). Returns ``{"natural_accuracy",
    "pgd_accuracy", "topk_intersection", "kendall", "evaluated", "misclassified", "no_mask", "examples",
    "eps", "region", "pgd_steps", "attack_steps", "k", "restarts"}``; with no example to attack, the
    attribution numbers are NaN and a warning is issued. The model runs in eval mode (restored afterwards);
    no random numbers are drawn from the global RNG (none at all with ``restarts=1``).
    """
    if region not in REGIONS:
        raise UserError(f"region {region!r} is not one of {', '.join(REGIONS)}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise UserError(f"robustness_report: eps must be a finite number >= 0, got {eps!r}")
    for name, value, low in (("max_examples", max_examples, 1), ("pgd_steps", pgd_steps, 0),
                             ("attack_steps", attack_steps, 0), ("batch_size", batch_size, 1),
                             ("restarts", restarts, 1), ("seed", seed, 0)):
        _check_int(name, value, low)
    shape = dataset.input_shape
    n_features = math.prod(shape[1:]) if len(shape) >= 3 else math.prod(shape)  # channels summed, as the maps
    if k is None:
        k = max(1, min(100, n_features // 4))
    elif isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_features:
        raise UserError(f"robustness_report: k must be an int in [1, {n_features}], got {k!r}")
    total = min(max_examples, len(dataset))
    batch_size = capped_batch_size(dataset, batch_size)
    subset = dataset.subset(torch.arange(total))
    where = f"dataset {dataset.name!r}"
    natural = robust = done = evaluated = 0
    topk_sum = kendall_sum = kendall_weight = 0.0
    counts = {"misclassified": 0, "no_mask": 0}
    with checked_outputs(model, dataset.num_classes, where), eval_mode(model):
        for start in range(0, total, batch_size):
            index = torch.arange(start, min(start + batch_size, total))
            part, batch = subset.subset(index), subset.batch(index).to(model_device(model))
            mask = torch.ones_like(batch.x) if region == "all" else batch.effective_mask
            x_adv = masked_pgd(model, batch.x, batch.y, mask, float(eps), pgd_steps, step_size=pgd_step_size,
                               bounds=dataset.input_range)
            with torch.no_grad():
                clean = check_logits(model(batch.x), dataset.num_classes, where, len(batch)).argmax(1)
                attacked = check_logits(model(x_adv), dataset.num_classes, where, len(batch)).argmax(1)
            natural += int((clean == batch.y).sum())
            robust += int((attacked == batch.y).sum())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a batch with nothing to attack: one warning below
                attr = attribution_robustness(
                    model, part, float(eps), attack_steps, k, attack_k=attack_k, step_size=step_size,
                    ig_steps=ig_steps, surrogate_beta=surrogate_beta, region=region, max_examples=len(part),
                    batch_size=len(part), restarts=restarts, seed=seed + start)
            for key in counts:
                counts[key] += attr[key]
            if attr["evaluated"]:
                evaluated += attr["evaluated"]
                topk_sum += attr["topk_intersection"] * attr["evaluated"]
                if not math.isnan(attr["kendall"]):
                    kendall_sum += attr["kendall"] * attr["evaluated"]
                    kendall_weight += attr["evaluated"]
            done += len(part)
            if progress is not None:
                progress(done, total)
    if evaluated == 0:
        reason = ("no non-empty mask among correctly classified examples" if region == "mask"
                  else "no correctly classified example")
        warnings.warn(f"robustness_report: {reason}; attribution robustness is NaN", RuntimeWarning, stacklevel=2)
    return {
        "natural_accuracy": natural / total if total else math.nan,
        "pgd_accuracy": robust / total if total else math.nan,
        "topk_intersection": topk_sum / evaluated if evaluated else math.nan,
        "kendall": kendall_sum / kendall_weight if kendall_weight else math.nan,
        "evaluated": evaluated,
        **counts,
        "examples": total,
        "eps": float(eps),
        "region": region,
        "pgd_steps": pgd_steps,
        "attack_steps": attack_steps,
        "k": k,
        "restarts": restarts,
    }


#: robustness settings (a run config's ``robustness`` keys) -> robustness_report's keyword arguments
SETTING_ARGUMENTS = {"examples": "max_examples", "pgd_steps": "pgd_steps", "attack_steps": "attack_steps",
                     "step_size": "step_size", "k": "k", "attack_k": "attack_k", "ig_steps": "ig_steps",
                     "restarts": "restarts", "region": "region"}


def report_from_settings(model: nn.Module, dataset: ExplanationDataset, settings: dict, method: str, params: dict,
                         seed: int = 0, progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """``robustness_report`` with a run config's ``robustness`` settings (keys: SETTING_ARGUMENTS and ``eps``;
    eps None or absent = ``training_eps(method, params)``). The result also records the settings used
    (``step_size``, ``attack_k`` and ``ig_steps``, besides what robustness_report returns)."""
    unknown = sorted(set(settings) - set(SETTING_ARGUMENTS) - {"eps"})
    if unknown:
        raise UserError(f"robustness: unknown setting {unknown[0]!r}; known: eps, {', '.join(SETTING_ARGUMENTS)}")
    eps = settings.get("eps")
    if eps is None:
        eps = training_eps(method, params)
        if eps is None:
            raise UserError(f"robustness: method {method!r} has no eps parameter to take the radius from; "
                            "give robustness.eps")
    kwargs = {SETTING_ARGUMENTS[key]: value for key, value in settings.items() if key != "eps"}
    report = robustness_report(model, dataset, float(eps), seed=seed, progress=progress, **kwargs)
    shape = dataset.input_shape
    n_features = math.prod(shape[1:]) if len(shape) >= 3 else math.prod(shape)
    attack_k = kwargs.get("attack_k")
    defaults = inspect.signature(robustness_report).parameters
    return {**report, "step_size": float(kwargs.get("step_size", defaults["step_size"].default)),
            "ig_steps": kwargs.get("ig_steps", defaults["ig_steps"].default),
            "attack_k": min(2 * report["k"], n_features) if attack_k is None else attack_k}
