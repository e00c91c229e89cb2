"""The loop: ``guided_curve(config, budgets, strategies)``.

Per seed, train a model with no masks (the config's method with every annotation hidden; for RRR that is
plain cross-entropy), then for each budget b (ascending) reveal the true masks of more training examples
until b are revealed, retrain, and evaluate on the test split. The revealed sets are nested: each step adds
to the previous one. Which examples are revealed next is chosen by a strategy (:mod:`.scores`) that sees
only the current model (the one trained at the previous step) and the training inputs, never the masks;
``disagreement`` also trains its committee (:mod:`.committee`) for the step. Each step is trained as
:mod:`.steps` says: from scratch, once per revealed set.
"""

from __future__ import annotations

import math
import zlib
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch

from ..data import DataSplits, ExplanationDataset, load_dataset
from ..errors import UserError
from ..methods import METHODS
from ..train.config import TrainConfig
from ..train.run import resolved_config
from .committee import DEFAULT_COMMITTEE, _cached_committee, check_committee
from .curve_files import DEFAULT_TARGET, GuidedCurve
from .scores import DEFAULT_STRATEGIES, DEFAULT_TOP_FRACTION, STRATEGIES, choose
from .steps import _cached_step


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


def _row(strategy, seed, budget, revealed, metrics, seconds) -> dict:
    return {"strategy": strategy, "seed": seed, "budget": budget, "revealed": revealed,
            "accuracy": metrics["accuracy"], "worst_group_accuracy": metrics["worst_group_accuracy"],
            "mean_group_accuracy": metrics["mean_group_accuracy"],
            "mask_share": metrics.get("mask_gradient_share", math.nan), "train_seconds": seconds}


def random_key(seed: int, n: int) -> np.ndarray:
    """(n,) the random strategy's keys for seed ``seed``: a stream of its own."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(b"guided/random")])).random(n)


def guided_curve(config: TrainConfig, budgets: Sequence = (10, 30, 100, 300, 1000),
                 strategies: Sequence[str] = DEFAULT_STRATEGIES, seeds: Optional[Sequence[int]] = None,
                 data: Optional[DataSplits] = None, top_fraction: float = DEFAULT_TOP_FRACTION,
                 balance: bool = False, target: float = DEFAULT_TARGET,
                 log: Optional[Callable[[str], None]] = None, progress: bool = False,
                 on_row: Optional[Callable[[GuidedCurve], None]] = None,
                 committee: int = DEFAULT_COMMITTEE) -> GuidedCurve:
    """The annotation curve of each strategy and seed (see the module docstring). ``seeds`` default to
    ``[config.seed]``; ``data`` (else loaded per seed from the config) is used for every seed. ``on_row`` is
    called with the curve so far after every row (e.g. to write it). ``committee``: the number of
    find-another models beside the current model in ``disagreement``'s committee."""
    budgets = parse_budgets(budgets)
    strategies = list(dict.fromkeys(strategies))
    bad = [s for s in strategies if s not in STRATEGIES]
    if not strategies or bad:
        raise UserError(f"guided: unknown strategy {(bad or [''])[0]!r}; known: {', '.join(STRATEGIES)}")
    if not 0 < top_fraction <= 1:
        raise UserError(f"guided: top_fraction must be in (0, 1], got {top_fraction!r}")
    committee = check_committee(committee)
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
        committees: dict[bytes, list] = {}  # disagreement's committee per revealed set

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
                    others = []
                    if strategy == "disagreement":
                        others = _cached_committee(committees, seeded, splits, revealed.clone(), model, committee,
                                                   f"seed {seed}, {strategy}, committee for budget {budget}", log,
                                                   progress)
                    chosen = choose(strategy, model, train, candidates, need, key, top_fraction, balance,
                                    committee_models=others)
                    revealed[chosen] = True
                model, metrics, seconds = _cached_step(cache, seeded, splits, revealed.clone(),
                                                       f"seed {seed}, {strategy}, budget {budget}", log, progress)
                sets[budget] = torch.nonzero(revealed).flatten().tolist()
                curve.rows.append(_row(label, seed, budget, int(revealed.sum()), metrics, seconds))
                if on_row is not None:
                    on_row(curve)
    return curve
