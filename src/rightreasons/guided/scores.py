"""Which examples are revealed next: the per-example score each strategy ranks by, and :func:`choose`.

The rule sees only the current model (the one trained at the previous step) and the training inputs, never
the masks:

- ``random``: a seeded random order of the annotated training examples, drawn once per seed (each budget
  takes a prefix of it).
- ``uncertainty``: the smallest margin p1 - p2 between the model's two largest softmax probabilities first.
- ``saliency``: the most concentrated input gradient first: per example, g = d/dx sum_k log softmax(f(x))_k
  (RRR's explanation), summed in absolute value over channels for images (N, C, H, W), and the score is the
  share of sum |g| that lies in the example's top ceil(top_fraction * D) features (D = pixels, or features
  for other data; top_fraction 0.05 by default). A model that reads a small region (a shortcut patch)
  scores high; an example whose gradient is exactly zero scores 0.
- ``disagreement``: query by committee, the largest disagreement first. The committee is the current model
  plus find-another-explanation models trained for this step (:mod:`.committee`); the score of an example
  is the mean over all pairs (a, b) of committee models of the total-variation distance
  0.5 * sum_k |p_a(k) - p_b(k)| between their softmax outputs (models in eval mode). Examples on which
  models pushed off each other's features predict differently are the ones whose masks should tell.

Ties go to the lower index. With ``balance`` every step's new examples are spread over the classes: each
class's best-scored example first, then each class's second, and so on (within a round by score); the
curve then names the strategies ``random+balance`` and so on.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ExplanationDataset
from ..data.dataset import capped_batch_size
from ..devices import model_device
from ..errors import UserError
from ..ops.input_gradients import input_gradients
from ..ops.modes import eval_mode

#: every strategy :func:`choose` knows
STRATEGIES = ("random", "uncertainty", "saliency", "disagreement")
#: the strategies a curve runs when none are named (``disagreement`` trains extra models at every step)
DEFAULT_STRATEGIES = ("random", "uncertainty", "saliency")
DEFAULT_TOP_FRACTION = 0.05


def uncertainty_scores(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """(N,) the margin p1 - p2 between the two largest softmax probabilities of each input (model in eval
    mode): small = uncertain."""
    device = model_device(model)
    out = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(x), batch_size):
            p = F.softmax(model(x[start:start + batch_size].to(device)).float(), dim=1)
            top = p.topk(min(2, p.shape[1]), dim=1).values
            out.append((top[:, 0] - (top[:, 1] if top.shape[1] > 1 else 0.0)).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def saliency_concentration(model: nn.Module, x: torch.Tensor, top_fraction: float = DEFAULT_TOP_FRACTION,
                           batch_size: int = 1000) -> torch.Tensor:
    """(N,) the share of each input's |input gradient| (of sum_k log softmax, channels summed for images) in its
    top ceil(top_fraction * D) features; 0 where the gradient is zero. See the module docstring."""
    if not 0 < top_fraction <= 1:
        raise UserError(f"guided: top_fraction must be in (0, 1], got {top_fraction!r}")
    device = model_device(model)
    out = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            grad, _ = input_gradients(model, x[start:start + batch_size].to(device), "log_prob_sum")
            a = grad.detach().abs()
            a = (a.sum(1) if a.dim() == 4 else a).flatten(1).float()
            k = max(1, math.ceil(top_fraction * a.shape[1]))
            total = a.sum(1)
            top = a.topk(min(k, a.shape[1]), dim=1).values.sum(1)
            out.append(torch.where(total > 0, top / total.clamp_min(torch.finfo(a.dtype).tiny), 0.0).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def disagreement_scores(models: Sequence[nn.Module], x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """(N,) float64: the mean over all pairs a < b of ``models`` (at least two) of the total-variation distance
    0.5 * sum_k |p_a(k) - p_b(k)| between their softmax outputs on each input (models in eval mode, no
    gradient): 0 where all agree, 1 where every pair puts its mass on different classes."""
    models = list(models)
    if len(models) < 2:
        raise UserError(f"guided: disagreement needs a committee of at least 2 models, got {len(models)}")
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size]
            probs = []
            for model in models:
                with eval_mode(model):
                    probs.append(F.softmax(model(chunk.to(model_device(model))).double(), dim=1).cpu())
            total = torch.zeros(len(chunk), dtype=torch.float64)
            for a in range(len(probs)):
                for b in range(a + 1, len(probs)):
                    total += 0.5 * (probs[a] - probs[b]).abs().sum(1)
            out.append(total / (len(probs) * (len(probs) - 1) // 2))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _order(score: np.ndarray, higher_first: bool) -> np.ndarray:
    """Positions of ``score`` best first, ties to the lower position."""
    return np.lexsort((np.arange(len(score)), -score if higher_first else score))


def choose(strategy: str, model: nn.Module, dataset: ExplanationDataset, candidates: torch.Tensor, k: int,
           random_key: Optional[np.ndarray] = None, top_fraction: float = DEFAULT_TOP_FRACTION,
           balance: bool = False, batch_size: int = 1000,
           committee_models: Sequence[nn.Module] = ()) -> torch.Tensor:
    """The ``k`` of ``candidates`` (training indices) that ``strategy`` reveals next, best first. ``random``
    takes the smallest ``random_key`` (one number per training example, fixed for the whole loop);
    ``disagreement`` scores with the committee ``[model, *committee_models]``."""
    if strategy not in STRATEGIES:
        raise UserError(f"guided: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    candidates = torch.as_tensor(candidates, dtype=torch.long)
    k = min(int(k), len(candidates))
    if k <= 0:
        return candidates[:0]
    if strategy == "random":
        if random_key is None:
            raise UserError("guided: strategy random needs random_key")
        order = _order(np.asarray(random_key)[candidates.numpy()], higher_first=False)
    else:
        x = dataset.x[candidates]
        if strategy == "uncertainty":
            order = _order(uncertainty_scores(model, x, batch_size).numpy(), higher_first=False)
        elif strategy == "disagreement":
            if not committee_models:
                raise UserError("guided: strategy disagreement needs committee_models")
            score = disagreement_scores([model, *committee_models], x, capped_batch_size(dataset, batch_size))
            order = _order(score.numpy(), higher_first=True)
        else:
            score = saliency_concentration(model, x, top_fraction, capped_batch_size(dataset, batch_size))
            order = _order(score.numpy(), higher_first=True)
    if balance:  # rank within the class first, then the order above
        y = dataset.y[candidates].numpy()[order]
        rank = np.zeros(len(order), dtype=np.int64)
        for c in np.unique(y):
            rank[y == c] = np.arange(int((y == c).sum()))
        order = order[np.lexsort((np.arange(len(order)), rank))]
    return candidates[torch.from_numpy(order[:k])]
