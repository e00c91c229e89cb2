"""A simulated interactive annotation loop: which masks to ask a person for, and how many are needed.

``guided_curve(config, budgets, strategies)``: per seed, train a model with no masks (the config's method
with every annotation hidden; for RRR that is plain cross-entropy), then for each budget b (ascending) reveal
the true masks of more training examples until b are revealed, retrain, and evaluate on the test split. The
revealed sets are nested: each step adds to the previous one. Which examples are revealed next is chosen by
a rule that sees only the current model (the one trained at the previous step) and the training inputs,
never the masks:

- ``random``: a seeded random order of the annotated training examples, drawn once per seed (each budget
  takes a prefix of it).
- ``uncertainty``: the smallest margin p1 - p2 between the model's two largest softmax probabilities first.
- ``saliency``: the most concentrated input gradient first: per example, g = d/dx sum_k log softmax(f(x))_k
  (RRR's explanation), summed in absolute value over channels for images (N, C, H, W), and the score is the
  share of sum |g| that lies in the example's top ceil(top_fraction * D) features (D = pixels, or features
  for other data; top_fraction 0.05 by default). A model that reads a small region (a shortcut patch)
  scores high; an example whose gradient is exactly zero scores 0.

Ties go to the lower index. With ``balance`` every step's new examples are spread over the classes: each
class's best-scored example first, then each class's second, and so on (within a round by score); the
curve then names the strategies ``random+balance`` and so on.

Every step trains from scratch with the run's seed (the same initialisation and batch order at every step),
so a point depends only on which masks are revealed, not on the path; revealed sets that repeat (every
strategy at "all") are trained once. Only examples annotated in the data (``has_mask``) can be revealed;
the others' masks are never shown.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
import zlib
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import DataSplits, ExplanationDataset, load_dataset
from .data.dataset import capped_batch_size
from .devices import model_device
from .errors import UserError
from .files import atomic_write_json, atomic_write_text
from .methods import METHODS, create_method
from .metrics.evaluate import evaluate
from .ops.input_gradients import input_gradients
from .ops.modes import eval_mode
from .train.config import TrainConfig
from .train.distributed import training_device
from .train.run import build_model, data_model_options, resolved_config
from .train.trainer import fit

STRATEGIES = ("random", "uncertainty", "saliency")
DEFAULT_TOP_FRACTION = 0.05
DEFAULT_TARGET = 0.9
#: the columns of curve.csv
COLUMNS = ("strategy", "seed", "budget", "revealed", "accuracy", "worst_group_accuracy", "mean_group_accuracy",
           "mask_share", "train_seconds")


@dataclass
class GuidedCurve:
    """The rows of the curve (one per strategy, seed and budget, budget 0 first: the model without masks) and
    the revealed sets: ``revealed[strategy][seed][budget]`` = the sorted training indices revealed (a
    strategy named ``NAME+balance`` with ``balance``)."""

    rows: list[dict] = field(default_factory=list)
    revealed: dict = field(default_factory=dict)
    target: float = DEFAULT_TARGET


# ------------------------------------------------------------------------------------------------ scores


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


def _order(score: np.ndarray, higher_first: bool) -> np.ndarray:
    """Positions of ``score`` best first, ties to the lower position."""
    return np.lexsort((np.arange(len(score)), -score if higher_first else score))


def choose(strategy: str, model: nn.Module, dataset: ExplanationDataset, candidates: torch.Tensor, k: int,
           random_key: Optional[np.ndarray] = None, top_fraction: float = DEFAULT_TOP_FRACTION,
           balance: bool = False, batch_size: int = 1000) -> torch.Tensor:
    """The ``k`` of ``candidates`` (training indices) that ``strategy`` reveals next, best first. ``random``
    takes the smallest ``random_key`` (one number per training example, fixed for the whole loop)."""
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


# ------------------------------------------------------------------------------------------------ the loop


def parse_budgets(budgets: Iterable) -> list:
    """Budgets as given (positive integers or ``"all"``: every annotated example), checked, ascending,
    duplicates removed, ``"all"`` last. A budget beyond the annotated examples reveals them all."""
    out, everything = set(), False
    for b in budgets:
        if b == "all":
            everything = True
        elif isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise UserError(f"guided: budgets must be positive whole numbers or 'all', got {b!r}")
        else:
            out.add(int(b))
    if not out and not everything:
        raise UserError("guided: give at least one budget")
    return sorted(out) + (["all"] if everything else [])


def _revealed_dataset(train: ExplanationDataset, revealed: torch.Tensor) -> ExplanationDataset:
    """The training split with only the ``revealed`` examples annotated (the others' masks emptied)."""
    out = copy.copy(train)
    out.has_mask = train.has_mask & revealed
    out.mask = train.mask & out.has_mask.view(-1, *([1] * (train.mask.dim() - 1)))
    return out


def _train_step(config: TrainConfig, data: DataSplits, revealed: torch.Tensor, log, progress) -> tuple:
    splits = DataSplits(_revealed_dataset(data.train, revealed), data.val, data.test, data.info)
    model = build_model(config, data.input_shape, data.num_classes, data_model_options(data, config.model_name()))
    model = model.to(training_device(config.device))
    result = fit(model, create_method(config.method, **config.params), splits, config, log=log, progress=progress)
    metrics = evaluate(model, data.test, mask_share=bool(data.test.has_mask.any()))
    return model, metrics, result.train_seconds


def _cached_step(cache: dict, config: TrainConfig, data: DataSplits, revealed: torch.Tensor, what: str, log,
                 progress) -> tuple:
    """(model, test metrics, train seconds) for the ``revealed`` set, trained once per set."""
    code = np.packbits(revealed.numpy()).tobytes()
    if code not in cache:
        start = time.perf_counter()
        step_log = None if log is None else (lambda line: log(f"{what}: {line}"))
        cache[code] = _train_step(config, data, revealed, step_log, progress)
        if log is not None:
            log(f"{what}: worst-group {cache[code][1]['worst_group_accuracy']:.3f} "
                f"({time.perf_counter() - start:.0f} s)")
    return cache[code]


def _row(strategy, seed, budget, revealed, metrics, seconds) -> dict:
    return {"strategy": strategy, "seed": seed, "budget": budget, "revealed": revealed,
            "accuracy": metrics["accuracy"], "worst_group_accuracy": metrics["worst_group_accuracy"],
            "mean_group_accuracy": metrics["mean_group_accuracy"],
            "mask_share": metrics.get("mask_gradient_share", math.nan), "train_seconds": seconds}


def random_key(seed: int, n: int) -> np.ndarray:
    """(n,) the random strategy's keys for seed ``seed``: a stream of its own."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(b"guided/random")])).random(n)


def guided_curve(config: TrainConfig, budgets: Sequence = (10, 30, 100, 300, 1000),
                 strategies: Sequence[str] = STRATEGIES, seeds: Optional[Sequence[int]] = None,
                 data: Optional[DataSplits] = None, top_fraction: float = DEFAULT_TOP_FRACTION,
                 balance: bool = False, target: float = DEFAULT_TARGET,
                 log: Optional[Callable[[str], None]] = None, progress: bool = False,
                 on_row: Optional[Callable[[GuidedCurve], None]] = None) -> GuidedCurve:
    """The annotation curve of each strategy and seed (see the module docstring). ``seeds`` default to
    ``[config.seed]``; ``data`` (else loaded per seed from the config) is used for every seed. ``on_row`` is
    called with the curve so far after every row (e.g. to write it)."""
    budgets = parse_budgets(budgets)
    strategies = list(dict.fromkeys(strategies))
    bad = [s for s in strategies if s not in STRATEGIES]
    if not strategies or bad:
        raise UserError(f"guided: unknown strategy {(bad or [''])[0]!r}; known: {', '.join(STRATEGIES)}")
    if not 0 < top_fraction <= 1:
        raise UserError(f"guided: top_fraction must be in (0, 1], got {top_fraction!r}")
    config = resolved_config(config)
    if not METHODS.get(config.method).uses_mask:
        raise UserError(f"guided: method {config.method!r} does not read masks; use rrr (or another mask method)")
    seeds = [config.seed] if seeds is None else [int(s) for s in seeds]
    curve = GuidedCurve(target=target)
    for seed in seeds:
        seeded = config.replace(seed=seed)
        splits = data if data is not None else load_dataset(seeded.data, seed=seed, **seeded.data_options)
        train = splits.train
        if not isinstance(train, ExplanationDataset):
            raise UserError(f"guided: the training split is a {type(train).__name__}; the loop needs an in-memory "
                            "ExplanationDataset (images or tables)")
        pool = torch.nonzero(train.has_mask).flatten()
        if not len(pool):
            raise UserError(f"guided: {train.name} has no annotated training example whose mask could be revealed")
        key = random_key(seed, len(train))
        cache: dict[bytes, tuple] = {}

        start_model, start_metrics, start_seconds = _cached_step(
            cache, seeded, splits, torch.zeros(len(train), dtype=torch.bool), f"seed {seed}, no masks", log, progress)
        for strategy in strategies:
            revealed = torch.zeros(len(train), dtype=torch.bool)
            label = strategy + ("+balance" if balance else "")
            sets = curve.revealed.setdefault(label, {}).setdefault(seed, {0: []})
            curve.rows.append(_row(label, seed, 0, 0, start_metrics, start_seconds))
            if on_row is not None:
                on_row(curve)
            model = start_model
            for budget in sorted({len(pool) if b == "all" else b for b in budgets}):
                need = min(budget, len(pool)) - int(revealed.sum())
                if need > 0:
                    candidates = pool[~revealed[pool]]
                    chosen = choose(strategy, model, train, candidates, need, key, top_fraction, balance)
                    revealed[chosen] = True
                model, metrics, seconds = _cached_step(cache, seeded, splits, revealed.clone(),
                                                       f"seed {seed}, {strategy}, budget {budget}", log, progress)
                sets[budget] = torch.nonzero(revealed).flatten().tolist()
                curve.rows.append(_row(label, seed, budget, int(revealed.sum()), metrics, seconds))
                if on_row is not None:
                    on_row(curve)
    return curve


# ------------------------------------------------------------------------------------------------ results


def mean_curve(rows: list[dict], column: str = "worst_group_accuracy") -> dict[str, list[tuple[int, float]]]:
    """{strategy: [(budget, mean of ``column`` over seeds)]}, budgets ascending."""
    values: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        values.setdefault(row["strategy"], {}).setdefault(int(row["budget"]), []).append(float(row[column]))
    return {s: [(b, sum(v) / len(v)) for b, v in sorted(by.items())] for s, by in values.items()}


def smallest_budget(rows: list[dict], target: float = DEFAULT_TARGET) -> dict[str, Optional[int]]:
    """{strategy: the smallest budget whose worst-group accuracy (mean over seeds) reaches ``target``, or None}."""
    return {s: next((b for b, v in pts if v >= target), None) for s, pts in mean_curve(rows).items()}


def curve_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in COLUMNS})
    return buffer.getvalue()


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def curve_svg(rows: list[dict], target: float = DEFAULT_TARGET, title: str = "worst-group test accuracy",
              width: int = 560, height: int = 300) -> str:
    """An SVG line chart of worst-group accuracy (mean over seeds) against the budget, log-scaled (budget 0,
    the model without masks, one decade left of the smallest budget), with a dashed line at ``target``; the
    chart is made wider for long strategy names."""
    series = mean_curve(rows)
    budgets = sorted({b for pts in series.values() for b, _ in pts})
    positive = [b for b in budgets if b > 0] or [1]
    lo, hi = math.log10(positive[0]) - 1, math.log10(positive[-1])
    hi = max(hi, lo + 1)
    longest = max((len(name) for name in series), default=0)
    right = max(130, 40 + 7 * longest)  # room for the legend
    width += right - 130
    left, top, bottom = 56, 28, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(b):
        return left + ((math.log10(b) if b > 0 else lo) - lo) / (hi - lo) * pw

    def sy(v):
        return top + (1 - min(max(v, 0.0), 1.0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" font-size="11" text-anchor="end">{t:g}</text>')
    out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(target):.1f}" y2="{sy(target):.1f}" stroke="#555" '
               f'stroke-dasharray="4 3"/><text x="{left + pw - 4}" y="{sy(target) - 4:.1f}" font-size="10" '
               f'text-anchor="end">{target:g}</text>')
    for b in budgets:
        out.append(f'<text x="{sx(b):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle">{b}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="11" text-anchor="middle">'
               'masks revealed (log scale)</text>')
    out.append(f'<text x="14" y="{top + ph / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + ph / 2})">worst-group accuracy</text>')
    for i, (name, pts) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(b):.1f},{sy(v):.1f}" for b, v in pts if math.isfinite(v))
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{sx(b):.1f}" cy="{sy(v):.1f}" r="3" fill="{colour}"/>' for b, v in pts
                if math.isfinite(v)]
        ly = top + 10 + 16 * i
        out.append(f'<rect x="{left + pw + 12}" y="{ly - 8}" width="12" height="4" fill="{colour}"/>'
                   f'<text x="{left + pw + 30}" y="{ly - 2}" font-size="11">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


#: the files :func:`write_curve` writes into its directory
FILES = ("curve.csv", "curve.svg", "revealed.json")


def write_curve(out: str | Path, curve: GuidedCurve) -> list[Path]:
    """Write ``out/curve.csv``, ``out/curve.svg`` and ``out/revealed.json`` (each atomically); the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in FILES]
    atomic_write_text(paths[0], curve_csv(curve.rows))
    atomic_write_text(paths[1], curve_svg(curve.rows, curve.target))
    revealed = {s: {str(seed): {str(b): idx for b, idx in by.items()} for seed, by in seeds.items()}
                for s, seeds in curve.revealed.items()}
    atomic_write_json(paths[2], revealed)
    return paths
