"""The training loop: one function, readable top to bottom.

Per epoch: advance the method's schedules, shuffle with the run's own generator, and for each batch
compute the method's loss, stop on a non-finite value (naming the step and the term), back-propagate
and step the optimiser; then measure the validation split. The model kept is the last one or the best
on validation (``select``); the test split is never looked at here.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from ..data.dataset import DataSplits, ExplanationDataset
from ..errors import UserError
from ..methods.base import Method, StepContext
from ..metrics.evaluate import evaluate
from ..ops.modes import train_mode
from .config import TrainConfig


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss term."""


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    selected_epoch: int = 0


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


def _check_finite(out, step: int, epoch: int) -> None:
    if math.isfinite(out.loss.item()):
        return
    bad = [name for name, value in out.terms.items() if not torch.isfinite(value).all()]
    raise NonFiniteLossError(
        f"non-finite loss at epoch {epoch + 1}, step {step}: term(s) {', '.join(bad) or 'total'} "
        f"({', '.join(f'{k}={v.item():.4g}' for k, v in out.terms.items())})"
    )


def fit(
    model: nn.Module,
    method: Method,
    data: DataSplits | ExplanationDataset,
    config: TrainConfig,
    log: Optional[Callable[[str], None]] = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` in place with ``method`` on ``data.train`` (or a bare dataset, then without
    validation) as ``config`` says. ``log`` receives one line per epoch; ``progress`` shows a bar."""
    train_set = data.train if isinstance(data, DataSplits) else data
    val_set = data.val if isinstance(data, DataSplits) else None
    if len(train_set) == 0:
        raise UserError(f"{train_set.name}: the training split is empty")
    if config.select != "last" and val_set is None:
        raise UserError(f"select={config.select!r} needs a validation split")
    torch.set_num_threads(config.threads or available_cores())
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    method_gen = torch.Generator().manual_seed(config.seed + 1_000_003)
    optimizer = make_optimizer(model, config)
    result = TrainResult(model)
    best_score, best_state = -math.inf, None
    steps_per_epoch = train_set.num_batches(config.batch_size)
    bar = _progress(progress, config.epochs * steps_per_epoch)
    step = 0
    start = time.perf_counter()
    try:
        for epoch in range(config.epochs):
            method.start_epoch(epoch, config.epochs)
            sums: dict[str, float] = {}
            epoch_start = time.perf_counter()
            with train_mode(model):
                for batch in train_set.batches(config.batch_size, shuffle=True, generator=shuffle_gen):
                    ctx = StepContext(epoch=epoch, num_epochs=config.epochs, step=step, generator=method_gen)
                    out = method.loss(model, batch, ctx)
                    _check_finite(out, step, epoch)
                    optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    optimizer.step()
                    step += 1
                    sums["loss"] = sums.get("loss", 0.0) + out.loss.item()
                    for key, value in out.terms.items():
                        sums[key] = sums.get(key, 0.0) + value.item()
                    if bar is not None:
                        bar.update(1)
            record = {"epoch": epoch + 1, "seconds": time.perf_counter() - epoch_start}
            record.update({k: v / steps_per_epoch for k, v in sums.items()})
            if val_set is not None and len(val_set):
                val = evaluate(model, val_set, mask_share=False)
                record["val_accuracy"] = val["accuracy"]
                record["val_worst_group_accuracy"] = val["worst_group_accuracy"]
            result.history.append(record)
            if log is not None:
                log(_format_epoch(record, config.epochs))
            if config.select != "last" and record[config.select] > best_score:
                best_score, result.selected_epoch = record[config.select], epoch + 1
                best_state = copy.deepcopy(model.state_dict())
    finally:
        if bar is not None:
            bar.close()
    result.train_seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.selected_epoch = config.epochs
    return result


def _format_epoch(record: dict, epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}"]
    parts += [f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "seconds")]
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)


class _Bar:
    """A thin rich progress bar (only when stderr is a terminal)."""

    def __init__(self, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress("training", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                  transient=True)
        self._task = self._progress.add_task("train", total=total)
        self._progress.start()

    def update(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def close(self) -> None:
        self._progress.stop()


def _progress(enabled: bool, total: int) -> Optional[_Bar]:
    import sys

    return _Bar(total) if enabled and sys.stderr.isatty() else None
