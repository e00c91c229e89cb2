"""Attribution robustness: how much an attack that keeps the prediction can change an explanation
(Ghorbani, Abid & Zou, AAAI 2019; the evaluation of Chen et al., NeurIPS 2019, "Robust Attribution
Regularization").

For every correctly classified example (up to ``max_examples``), the saliency map is
s(x) = |IG of the label logit from a zero baseline|, summed over channels and normalised to sum 1
(Chen et al.'s code; ``attribution="gradient"`` uses |input gradient| instead). The top-k attack of
Ghorbani et al. then takes ``attack_steps`` signed steps of ``step_size`` that decrease the saliency mass
on the original top ``attack_k`` features, staying in the l_inf ball |x' - x| <= attack_eps (times the
mask for ``region="mask"``) and in [clip_min, clip_max]. Because ReLU networks have zero second
derivatives, the attack differentiates a surrogate in which every ``nn.ReLU`` module computes
softplus(beta * z) / beta (``surrogate_beta``; Chen et al. use softplus, beta = 1; ``None`` attacks the
model itself). After every step the real model checks the label (a step that flips it is not
accepted) and the criterion (Kendall's tau, as Chen et al., or the top-k intersection); the accepted
point with the lowest criterion is kept. With ``restarts`` > 1 the attack is run that many times, as Chen et
al. evaluate: the first restart starts at x itself (so ``restarts=1`` is the deterministic attack, bit for
bit), every further one at a uniform random point of the (clipped) l_inf ball, drawn from a
``torch.Generator`` seeded with ``seed`` (never the global RNG); per example the accepted point with the
lowest criterion over all restarts is kept, so more restarts never report a higher criterion.
Reported: mean top-``k`` intersection and mean Kendall tau-b between s(x) and s(x') over the evaluated
examples. With no example to evaluate (no correct prediction, or no non-empty mask for ``region="mask"``)
both are NaN and a warning is issued.

Defaults are Chen et al.'s MNIST evaluation (eps 0.3, 100 steps of 0.01, k = 100, attack_k = 200,
IG with 50 points, softplus beta 1). Compare models at the radius they were trained for: ``ig_sum_norm``'s
default MLP radius is 0.1. Without the surrogate the attack barely moves ReLU models (ReLU networks have
zero second derivatives; measurements: docs/results/method-tuning.md#attribution-robustness).
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataset import ExplanationDataset, capped_batch_size
from ..devices import model_device, rand_like
from ..errors import UserError
from ..ops.integrated_gradients import integrated_gradients
from ..ops.interval_bounds import mask_box
from ..ops.modes import eval_mode
from ..ops.pgd import sign_pgd
from .logits import check_logits, checked_outputs

ATTRIBUTIONS = ("ig", "gradient")
CRITERIA = ("kendall", "topk")
REGIONS = ("all", "mask")


def _rows(a: torch.Tensor, b: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape or a.dim() < 1:
        raise UserError(f"{name}: a and b must have the same shape (..., n), got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])


def topk_intersection(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """|top_k(a) & top_k(b)| / k along the last dim (ties broken by lower index first), shape a.shape[:-1]."""
    ra, rb = _rows(a, b, "topk_intersection")
    n = ra.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise UserError(f"topk_intersection: k must be an int in [1, {n}], got {k!r}")

    def top(t):
        index = torch.sort(t, dim=1, descending=True, stable=True).indices[:, :k]
        return torch.zeros_like(t, dtype=torch.bool).scatter_(1, index, True)

    shared = (top(ra) & top(rb)).sum(1).to(torch.float64) / k
    return shared.reshape(a.shape[:-1])


def _tied_pairs(sorted_rows: torch.Tensor) -> torch.Tensor:
    """Number of equal pairs in each sorted row: sum over elements of (position - first equal position)."""
    position = torch.arange(sorted_rows.shape[1], device=sorted_rows.device).expand_as(sorted_rows)
    return (position - torch.searchsorted(sorted_rows, sorted_rows)).sum(1)


def _inversions(seq: torch.Tensor) -> torch.Tensor:
    """Pairs i < j with seq_i > seq_j in each row of a non-negative int64 (R, n) tensor: bottom-up merge
    sort, counting for each element of a right block the larger elements of its (sorted) left block."""
    rows, n = seq.shape
    width = 1
    while width < n:
        width *= 2
    cur = torch.cat([seq, seq.new_full((rows, width - n), n + 1)], 1)  # pads are larger and last: no inversions
    total = torch.zeros(rows, dtype=torch.int64, device=seq.device)
    w = 1
    while w < width:
        blocks = cur.view(rows, width // (2 * w), 2, w)
        left, right = blocks[:, :, 0].contiguous(), blocks[:, :, 1].contiguous()
        right_in_left = torch.searchsorted(left, right, right=True)  # left elements <= each right element
        total += (w - right_in_left).sum((1, 2))
        # merge the two sorted halves: each element's rank in its own half plus its rank in the other
        rank = torch.arange(w, device=seq.device)
        merged = torch.empty_like(cur).view(rows, width // (2 * w), 2 * w)
        merged.scatter_(2, rank + torch.searchsorted(right, left), left)
        merged.scatter_(2, rank + right_in_left, right)
        cur = merged.view(rows, width)
        w *= 2
    return total


def kendall_tau(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kendall's tau-b along the last dim, shape a.shape[:-1] (float64; NaN where a or b is constant).

    tau_b = (C - D) / sqrt((P - T_a) (P - T_b)) with P = n(n-1)/2 pairs, C / D the concordant / discordant
    pairs and T_a / T_b the pairs tied in a / b (what scipy.stats.kendalltau computes by default).
    O(n log^2 n) per row, vectorised over rows (Knight's method: sort by (a, b), count the inversions
    of b, which are the discordant pairs; C = P - T_a - T_b + T_ab - D)."""
    ra, rb = _rows(a, b, "kendall_tau")
    rows, n = ra.shape
    if n < 2:
        return torch.full(a.shape[:-1], torch.nan, dtype=torch.float64)
    sa, sb = torch.sort(ra, dim=1).values, torch.sort(rb, dim=1).values
    rank_a, rank_b = torch.searchsorted(sa, ra.contiguous()), torch.searchsorted(sb, rb.contiguous())
    key, order = torch.sort(rank_a * n + rank_b, dim=1)  # lexicographic order by (a, b)
    ties_a, ties_b, ties_ab = _tied_pairs(sa), _tied_pairs(sb), _tied_pairs(key)
    discordant = _inversions(rank_b.gather(1, order))
    pairs = n * (n - 1) // 2
    score = (pairs - ties_a - ties_b + ties_ab - 2 * discordant).double()
    denominator = ((pairs - ties_a).double() * (pairs - ties_b).double()).sqrt()
    tau = torch.where(denominator > 0, score / denominator.clamp_min(1.0), torch.nan)
    return tau.cpu().reshape(a.shape[:-1])


@contextmanager
def softplus_surrogate(model: nn.Module, beta: Optional[float]):
    """Within the block every ``nn.ReLU`` module of ``model`` outputs softplus(beta z) / beta (hooks removed after)."""
    handles = []
    try:
        if beta is not None:
            for module in model.modules():
                if isinstance(module, nn.ReLU):
                    handles.append(module.register_forward_hook(lambda m, inp, out: F.softplus(inp[0], beta=beta)))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def saliency(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attribution: str = "ig", ig_steps: int = 50,
             chunk_size: Optional[int] = None, create_graph: bool = False) -> torch.Tensor:
    """Normalised saliency map (B, n): |attribution| of the label logit, summed over channels, summing to 1."""
    if attribution == "ig":
        attr = integrated_gradients(model, x, None, y, ig_steps, chunk_size=chunk_size, create_graph=create_graph)
    elif attribution == "gradient":
        xg = x if x.requires_grad else x.detach().requires_grad_(True)
        with torch.enable_grad():
            score = model(xg).gather(1, y.view(-1, 1)).sum()
            (attr,) = torch.autograd.grad(score, xg, create_graph=create_graph)
    else:
        raise UserError(f"attribution {attribution!r} is not one of {', '.join(ATTRIBUTIONS)}")
    attr = attr.abs()
    if attr.dim() >= 4:  # (B, C, H, W...): sum over channels, as Chen et al.
        attr = attr.sum(1)
    flat = attr.flatten(1)
    return flat / flat.sum(1, keepdim=True).clamp_min(torch.finfo(flat.dtype).tiny)


def _criterion(kind: str, s0: torch.Tensor, s1: torch.Tensor, k: int) -> torch.Tensor:
    return kendall_tau(s0, s1) if kind == "kendall" else topk_intersection(s0, s1, k)


def attribution_attack(model, x, y, radius, *, steps, step_size, attack_k, k, attribution, ig_steps,
                       chunk_size, surrogate_beta, criterion, clip_min, clip_max, restarts=1, generator=None):
    """Ghorbani et al.'s top-k attack on a batch; returns (s(x), s(x_best)), both (B, n). Restart 0 starts at
    x, restarts 1 .. ``restarts`` - 1 at uniform points of the box drawn from ``generator`` (required then)."""
    if restarts > 1 and generator is None:
        raise UserError("attribution_attack: restarts > 1 need a torch.Generator (the global RNG is never used)")
    s0 = saliency(model, x, y, attribution, ig_steps, chunk_size)
    top = torch.zeros_like(s0).scatter_(1, torch.sort(s0, dim=1, descending=True, stable=True).indices[:, :attack_k],
                                        1.0)
    best_s = s0.clone()
    best_score = torch.full((x.shape[0],), math.inf, dtype=torch.float64)
    lower, upper = mask_box(x, radius, 1.0, (clip_min, clip_max))

    def top_mass(x_adv):  # saliency mass on the original top features, through the surrogate
        with softplus_surrogate(model, surrogate_beta):
            return (saliency(model, x_adv, y, attribution, ig_steps, chunk_size, create_graph=True) * top).sum()

    def keep_best(x_adv):  # the accepted point (label kept) with the lowest criterion so far
        nonlocal best_score
        with torch.no_grad():
            keeps_label = model(x_adv).argmax(1) == y
        s1 = saliency(model, x_adv, y, attribution, ig_steps, chunk_size)
        score = _criterion(criterion, s0, s1, k)
        better = keeps_label.cpu() & (score < best_score)
        best_score = torch.where(better, score, best_score)
        best_s[better] = s1[better]

    for restart in range(restarts):
        if restart == 0:
            start = x
        else:  # uniform in the clipped box, drawn on the CPU so a seed gives the same points on every device
            start = rand_like(x, generator)
            start = torch.minimum(torch.maximum(start.mul_(upper - lower).add_(lower), lower), upper)
        sign_pgd(top_mass, start, lower, upper, steps, step_size, maximize=False, on_step=keep_best)
    return s0, best_s


def attribution_robustness(
    model: nn.Module,
    dataset: ExplanationDataset,
    attack_eps: float = 0.3,
    attack_steps: int = 100,
    k: int = 100,
    *,
    attack_k: Optional[int] = None,
    step_size: float = 0.01,
    attribution: str = "ig",
    ig_steps: int = 50,
    chunk_size: Optional[int] = None,
    surrogate_beta: Optional[float] = 1.0,
    criterion: str = "kendall",
    region: str = "all",
    max_examples: int = 200,
    batch_size: int = 100,
    clip_min: Optional[float] = None,
    clip_max: Optional[float] = None,
    restarts: int = 1,
    seed: int = 0,
) -> dict:
    """Mean top-k intersection and Kendall tau-b of saliency maps before / after the top-k attack.

    Uses the first ``max_examples`` examples of ``dataset`` (deterministic: with ``restarts=1`` the attack
    draws no random numbers; with more, the random starts come from a generator seeded with ``seed``, see
    the module); ``attack_k`` defaults to min(2k, n) (Chen et al.: 200 and k = 100 on MNIST). Returns
    ``{"topk_intersection", "kendall", "evaluated", "misclassified", "no_mask"}``. The model runs in eval mode.
    ``clip_min`` / ``clip_max`` default to ``dataset.input_range``. Clean logits that are not finite
    (batch, num_classes) raise a one-line ``UserError`` naming the dataset.
    """
    if attribution not in ATTRIBUTIONS:
        raise UserError(f"attribution {attribution!r} is not one of {', '.join(ATTRIBUTIONS)}")
    if criterion not in CRITERIA:
        raise UserError(f"criterion {criterion!r} is not one of {', '.join(CRITERIA)}")
    if region not in REGIONS:
        raise UserError(f"region {region!r} is not one of {', '.join(REGIONS)}")
    for name, value, low in (("attack_steps", attack_steps, 0), ("max_examples", max_examples, 1),
                             ("batch_size", batch_size, 1), ("ig_steps", ig_steps, 1), ("restarts", restarts, 1),
                             ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"attribution_robustness: {name} must be an int >= {low}, got {value!r}")
    if attack_eps < 0 or step_size <= 0:
        raise UserError("attribution_robustness: need attack_eps >= 0 and step_size > 0, "
                        f"got {attack_eps}, {step_size}")
    n_features = math.prod(dataset.input_shape[1:]) if len(dataset.input_shape) >= 3 else math.prod(dataset.input_shape)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_features:
        raise UserError(f"attribution_robustness: k must be an int in [1, {n_features}], got {k!r}")
    attack_k = min(2 * k, n_features) if attack_k is None else attack_k
    if not 1 <= attack_k <= n_features:
        raise UserError(f"attribution_robustness: attack_k must be in [1, {n_features}], got {attack_k!r}")

    clip_min = dataset.input_range[0] if clip_min is None else clip_min
    clip_max = dataset.input_range[1] if clip_max is None else clip_max
    if not clip_min <= clip_max:
        raise UserError(f"attribution_robustness: clip_min={clip_min} must be <= clip_max={clip_max}")
    subset = dataset.subset(torch.arange(min(max_examples, len(dataset))))
    inter, kend = [], []
    counts = {"misclassified": 0, "no_mask": 0}
    where = f"dataset {dataset.name!r}"
    generator = torch.Generator().manual_seed(seed) if restarts > 1 else None
    device = model_device(model)
    with checked_outputs(model, dataset.num_classes, where), eval_mode(model):
        for batch in subset.batches(capped_batch_size(subset, batch_size)):
            batch = batch.to(device)
            x = batch.x.detach()
            with torch.no_grad():
                keep = check_logits(model(x), dataset.num_classes, where, len(batch)).argmax(1) == batch.y
            counts["misclassified"] += int((~keep).sum())
            if region == "mask":
                has = batch.effective_mask.flatten(1).any(1)
                counts["no_mask"] += int((keep & ~has).sum())
                keep = keep & has
            if not bool(keep.any()):
                continue
            radius = attack_eps * (batch.effective_mask[keep] if region == "mask" else torch.ones_like(x[keep]))
            s0, s1 = attribution_attack(
                model, x[keep], batch.y[keep], radius, steps=attack_steps, step_size=step_size, attack_k=attack_k,
                k=k, attribution=attribution, ig_steps=ig_steps, chunk_size=chunk_size,
                surrogate_beta=surrogate_beta, criterion=criterion, clip_min=clip_min, clip_max=clip_max,
                restarts=restarts, generator=generator)
            inter.append(topk_intersection(s0, s1, k).cpu())
            kend.append(kendall_tau(s0, s1).cpu())
    evaluated = sum(t.numel() for t in inter)
    if evaluated == 0:
        reason = ("no non-empty mask among correctly classified examples" if region == "mask"
                  else "no correctly classified example")
        warnings.warn(f"attribution_robustness: {reason}; reporting NaN", RuntimeWarning, stacklevel=2)
        return {"topk_intersection": math.nan, "kendall": math.nan, "evaluated": 0, **counts}
    kendall = torch.cat(kend)
    return {"topk_intersection": torch.cat(inter).mean().item(), "kendall": kendall.nanmean().item(),
            "evaluated": evaluated, **counts}
