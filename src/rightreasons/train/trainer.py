"""The training loop: one function, readable top to bottom.

Per epoch: advance the method's schedules, shuffle with the run's own generator, and for each batch
compute the method's loss, stop on (or skip) a non-finite value (naming the step and the term),
back-propagate and step the optimiser; then measure the validation split and write a checkpoint. The model kept is the last one or the best
on validation (``select``); the test split is never looked at here.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..data.dataset import DataSplits, ExplanationDataset
from ..errors import UserError
from ..methods.base import Method, StepContext
from ..metrics.evaluate import evaluate
from ..ops.modes import train_mode
from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import available_cores  # noqa: F401  (re-exported)
from .distributed import barrier, check_static_graph, local_cores, loss_scale, shard, world, wrap


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss term."""


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    selected_epoch: int = 0


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate for optimiser step ``step`` (0-based) of ``total_steps``: ``config.lr``, or
    with ``lr_schedule="cosine"`` lr * (1 + cos(pi * step / total_steps)) / 2 (Loshchilov & Hutter 2017)."""
    if config.lr_schedule == "constant":
        return config.lr
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def _nonfinite_message(out, step: int, epoch: int) -> Optional[str]:
    if math.isfinite(out.loss.item()):
        return None
    bad = [name for name, value in out.terms.items() if not torch.isfinite(value).all()]
    return (f"non-finite loss at epoch {epoch + 1}, step {step}: term(s) {', '.join(bad) or 'total'} "
            f"({', '.join(f'{k}={v.item():.4g}' for k, v in out.terms.items())})")


#: config fields that may differ between a checkpoint and the run resuming it
RESUMABLE_CHANGES = ("epochs", "threads")


def _restore(checkpoint_dir, config, model, optimizer, method, gens) -> Optional[dict]:
    path = latest_checkpoint(checkpoint_dir)
    if path is None:
        return None
    ckpt = load_checkpoint(path)
    saved = ckpt["meta"]["config"]
    current = config.to_dict()
    differ = sorted(k for k in set(saved) | set(current)
                    if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))
    if differ:
        raise CheckpointError(f"{path}: was written by a run with different {', '.join(differ)}; cannot resume")
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["state"]["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: does not fit this model ({str(exc).splitlines()[0]})") from None
    state = ckpt["state"]
    method.load_state_dict(state["method"])
    for name, gen in gens.items():
        gen.set_state(state["rng"][name])
    torch.set_rng_state(state["rng"]["torch"])
    state["best_state"] = ckpt["best"]
    return state


def fit(
    model: nn.Module,
    method: Method,
    data: DataSplits | ExplanationDataset,
    config: TrainConfig,
    log: Optional[Callable[[str], None]] = None,
    progress: bool = False,
    checkpoint_dir: Optional[str | Path] = None,
    resume: bool = False,
) -> TrainResult:
    """Train ``model`` in place with ``method`` on ``data.train`` (or a bare dataset, then without
    validation) as ``config`` says. ``log`` receives one line per epoch; ``progress`` shows a bar.

    With ``checkpoint_dir`` a checkpoint is written after every epoch; with ``resume`` training
    continues from the latest one there, exactly as if it had never stopped. Training draws on its
    own random streams (seeded from ``config.seed``), never on the caller's global RNG.
    """
    # None (unset epochs or batch size): the dataset's default
    config = config.replace(epochs=config.epoch_count(), batch_size=config.batch_size_used())
    train_set = data.train if isinstance(data, DataSplits) else data
    val_set = data.val if isinstance(data, DataSplits) else None
    if len(train_set) == 0:
        raise UserError(f"{train_set.name}: the training split is empty")
    if config.select != "last" and val_set is None:
        raise UserError(f"select={config.select!r} needs a validation split")
    rank, size = world()
    check_static_graph(model)
    torch.set_num_threads(config.threads or local_cores())
    step_fn = wrap(model, method) if size > 1 else (lambda b, c: method.loss(model, b, c))
    gens = {"shuffle": torch.Generator().manual_seed(config.seed),
            "method": torch.Generator().manual_seed(config.seed + 1_000_003)}
    optimizer = make_optimizer(model, config)
    result = TrainResult(model)
    steps_per_epoch = train_set.num_batches(config.batch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 2_000_003)  # dropout and other in-model randomness
        restored = _restore(checkpoint_dir, config, model, optimizer, method, gens) if resume and checkpoint_dir else None
        first_epoch, step, best_score, best_state, seconds = 0, 0, -math.inf, None, 0.0
        if restored is not None:
            first_epoch, step, seconds = restored["epoch"], restored["step"], restored["seconds"]
            best_score, best_state = restored["best_score"], restored["best_state"]
            result.history, result.selected_epoch = list(restored["history"]), restored["selected_epoch"]
            if log is not None and rank == 0:
                log(f"resuming after epoch {first_epoch} from {checkpoint_dir}")
        bar = _progress(progress and rank == 0, (config.epochs - first_epoch) * steps_per_epoch)
        try:
            for epoch in range(first_epoch, config.epochs):
                epoch_start = time.perf_counter()
                method.start_epoch(epoch, config.epochs)
                sums: dict[str, float] = {}
                skipped = 0
                with train_mode(model):
                    for index in train_set.index_batches(config.batch_size, shuffle=True, generator=gens["shuffle"]):
                        local = shard(index, rank, size) if size > 1 else index
                        ctx = StepContext(epoch=epoch, num_epochs=config.epochs, step=step, generator=gens["method"],
                                          input_range=train_set.input_range)
                        out = step_fn(train_set.batch(local), ctx)
                        step += 1
                        if bar is not None:
                            bar.update(1)
                        problem = _nonfinite_message(out, step - 1, epoch)
                        if problem is not None:
                            if config.on_nonfinite == "stop":
                                raise NonFiniteLossError(problem)
                            skipped += 1
                            if log is not None and rank == 0:
                                log(f"skipped: {problem}")
                            continue
                        for group in optimizer.param_groups:
                            group["lr"] = learning_rate(config, step - 1, config.epochs * steps_per_epoch)
                        optimizer.zero_grad(set_to_none=True)
                        (out.loss * loss_scale(len(local), len(index), size) if size > 1 else out.loss).backward()
                        optimizer.step()
                        sums["loss"] = sums.get("loss", 0.0) + out.loss.item()
                        for key, value in out.terms.items():
                            sums[key] = sums.get(key, 0.0) + value.item()
                used = max(steps_per_epoch - skipped, 1)
                record = {"epoch": epoch + 1}
                record.update({k: v / used for k, v in sums.items()})
                if skipped:
                    record["skipped_batches"] = skipped
                if val_set is not None and len(val_set):
                    val = evaluate(model, val_set, mask_share=False)
                    record["val_accuracy"] = val["accuracy"]
                    record["val_worst_group_accuracy"] = val["worst_group_accuracy"]
                record["seconds"] = time.perf_counter() - epoch_start
                seconds += record["seconds"]
                result.history.append(record)
                if config.select != "last" and record[config.select] > best_score:
                    best_score, result.selected_epoch = record[config.select], epoch + 1
                    best_state = copy.deepcopy(model.state_dict())
                if checkpoint_dir is not None and rank == 0:
                    state = {"epoch": epoch + 1, "step": step, "seconds": seconds, "optimizer": optimizer.state_dict(),
                             "method": method.state_dict(), "history": result.history, "best_score": best_score,
                             "selected_epoch": result.selected_epoch,
                             "rng": {**{k: g.get_state() for k, g in gens.items()}, "torch": torch.get_rng_state()}}
                    save_checkpoint(checkpoint_dir, epoch + 1, model.state_dict(), state, config.to_dict(), best_state)
                barrier()  # the checkpoint is complete before any process goes on
                if log is not None and rank == 0:
                    log(_format_epoch(record, config.epochs))
        finally:
            if bar is not None:
                bar.close()
    result.train_seconds = seconds
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
