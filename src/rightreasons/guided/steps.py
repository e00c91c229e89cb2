"""One step of the loop: a model trained from scratch on the training split with only the revealed examples'
masks, evaluated on the test split, and trained once per revealed set.

Every step trains from scratch with the run's seed (the same initialisation and batch order at every step),
so a point depends only on which masks are revealed, not on the path; revealed sets that repeat (every
strategy at "all") are trained once. Only examples annotated in the data (``has_mask``) can be revealed;
the others' masks are never shown.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from ..data import DataSplits, ExplanationDataset
from ..methods import create_method
from ..metrics.evaluate import evaluate
from ..train.config import TrainConfig
from ..train.distributed import training_device
from ..train.run import build_model, data_model_options
from ..train.trainer import fit


def _revealed_dataset(train: ExplanationDataset, revealed: torch.Tensor) -> ExplanationDataset:
    """The training split with only the ``revealed`` examples annotated (the others' masks emptied)."""
    out = copy.copy(train)
    out.has_mask = train.has_mask & revealed
    out.mask = train.mask & out.has_mask.view(-1, *([1] * (train.mask.dim() - 1)))
    return out


def _train_on(config: TrainConfig, data: DataSplits, train: ExplanationDataset, log, progress) -> tuple:
    """(model, test metrics, train seconds): a model trained from scratch as ``config`` says on ``train`` in
    place of ``data.train``."""
    splits = DataSplits(train, data.val, data.test, data.info)
    model = build_model(config, data.input_shape, data.num_classes, data_model_options(data, config.model_name()))
    model = model.to(training_device(config.device))
    result = fit(model, create_method(config.method, **config.params), splits, config, log=log, progress=progress)
    metrics = evaluate(model, data.test, mask_share=bool(data.test.has_mask.any()))
    return model, metrics, result.train_seconds


def _train_step(config: TrainConfig, data: DataSplits, revealed: torch.Tensor, log, progress) -> tuple:
    return _train_on(config, data, _revealed_dataset(data.train, revealed), log, progress)


def revealed_code(revealed: torch.Tensor) -> bytes:
    """The cache key of a revealed set (a bool tensor over the training examples)."""
    return np.packbits(revealed.numpy()).tobytes()


def _cached_step(cache: dict, config: TrainConfig, data: DataSplits, revealed: torch.Tensor, what: str, log,
                 progress) -> tuple:
    """(model, test metrics, train seconds) for the ``revealed`` set, trained once per set."""
    code = revealed_code(revealed)
    if code not in cache:
        start = time.perf_counter()
        step_log = None if log is None else (lambda line: log(f"{what}: {line}"))
        cache[code] = _train_step(config, data, revealed, step_log, progress)
        if log is not None:
            log(f"{what}: worst-group {cache[code][1]['worst_group_accuracy']:.3f} "
                f"({time.perf_counter() - start:.0f} s)")
    return cache[code]
