"""The training loop: ``fit``, readable top to bottom, with its steps in small helpers below it.

Before the first step the model is run once on two training examples (eval mode, no gradients, the
global RNG untouched) and refused unless it gives finite logits of shape (batch, num_classes); during
training every output of the model is checked for that shape (metrics.logits), and a loss that does not
depend on any trainable parameter is refused. Per epoch: advance the method's schedules, shuffle with the
run's own generator, and for each batch compute the method's loss, stop on (or skip) a non-finite value
(naming the step and the term), back-propagate and step the optimiser; then measure the validation split
and write a checkpoint. The model kept is the last one or the best on validation (``select``); the test
split is never looked at here. With ``ema_decay`` an exponential moving average of the weights is updated
after every step (``train.averaging``), and it is the average that validation measures and that is kept.
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
from torch.nn.modules.lazy import LazyModuleMixin

from ..data.augment import create_augmentation
from ..data.dataset import DataSplits, ExplanationDataset
from ..data.shortcut_break import break_shortcut, has_annotations
from ..data.text.embedded import explanation_space, is_text_dataset
from ..devices import model_device
from ..errors import UserError
from ..methods.base import Method, StepContext
from ..metrics.evaluate import evaluate
from ..metrics.logits import check_logits, check_module, checked_outputs, first_line
from ..ops.modes import eval_mode, train_mode
from ..precision import autocast, grad_scaler, input_grad_scale
from .averaging import WeightAverage
from .config import TrainConfig
from .distributed import barrier, check_static_graph, loss_scale, shard, world, wrap
from .progress import progress_bar
from .resume import resume_run, write_checkpoint
from .selection import RAW_TEST_KEYS, TEST_KEYS, is_better, uses_broken_validation


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss term."""


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    selected_epoch: int = 0


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of ``config`` over the trainable parameters (``requires_grad``) of ``model``; frozen
    parameters stay as they are. Refuses a model with nothing to train."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        count = sum(1 for _ in model.parameters())
        raise UserError("model has no parameters to train (a tensor attribute is one only as an nn.Parameter)"
                        if count == 0 else
                        f"model: all {count} of its parameter tensors are frozen (requires_grad=False); "
                        "nothing to train (unfreeze the ones to train)")
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
    # the config with unset epochs and batch size resolved, and the splits
    check_module(model)
    config, train_set, val_set = _resolve(config, data)
    explanation_space(model, train_set)  # a text model needs text data, and text data a text model
    # this process among the processes training together, and the loss of one step (under DDP if several)
    rank, size = world()
    check_static_graph(model)
    with train_mode(model):  # the method refuses a model it cannot train before the first step
        method.check_model(model)
    check_outputs(model, train_set)  # and so does this: outputs that are not finite (batch, num_classes) logits
    # selecting on the validation split with its shortcut broken: built once, from the split's own masks;
    # comparing the rules: that split where it can be built, and the test split (read by no rule)
    broken_val = _broken_validation(val_set, config)
    test_set = data.test if config.compare_selections else None
    step_fn = wrap(model, method) if size > 1 else (lambda b, c: method.loss(model, b, c))
    say = _logger(log, rank)
    # the run's own random streams for shuffling and for the method (CPU generators, on every device),
    # the optimiser, and the loss scaler of fp16
    gens = {"shuffle": torch.Generator().manual_seed(config.seed),
            "method": torch.Generator().manual_seed(config.seed + 1_000_003)}
    augmentation = create_augmentation(config.augment)
    if augmentation is not None and is_text_dataset(train_set):
        raise UserError(f"{train_set.name}: augmentation transforms images; the data is text (leave augment unset)")
    if augmentation is not None:  # image and mask moved together, from a stream of its own
        augmentation.check(train_set.batch(torch.arange(1)), train_set.input_range)
        gens["augment"] = torch.Generator().manual_seed(config.seed + 3_000_017)
    optimizer = make_optimizer(model, config)
    scaler = grad_scaler(model_device(model), config.precision)
    average = WeightAverage(config.ema_decay) if config.ema_decay is not None else None
    result = TrainResult(model)
    steps_per_epoch = train_set.num_batches(config.batch_size)
    where = f"training data {train_set.name!r}"
    with checked_outputs(model, train_set.num_classes, where), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 2_000_003)  # dropout and other in-model randomness
        # continue after the latest checkpoint (with resume), else start afresh
        run = resume_run(checkpoint_dir if resume else None, config, model, optimizer, method, gens, scaler, average,
                         result, say)
        with progress_bar(progress and rank == 0, (config.epochs - run.epoch) * steps_per_epoch) as bar:
            for epoch in range(run.epoch, config.epochs):
                # advance the method's schedules, then one pass over the shuffled training split
                epoch_start = time.perf_counter()
                method.start_epoch(epoch, config.epochs)
                sums, skipped = _train_epoch(epoch, run, model, step_fn, optimizer, scaler, augmentation, train_set,
                                             config, gens, bar, say, average)
                # the epoch's record: mean loss terms, skipped batches, validation metrics (of the averaged
                # weights, with ema_decay), seconds
                record = _epoch_record(epoch, sums, skipped, steps_per_epoch, model, val_set, epoch_start,
                                       broken_val, test_set, average)
                run.seconds += record["seconds"]
                result.history.append(record)
                # keep the weights of the best epoch on validation so far
                _select_best(record, config, model, run, result, average)
                run.epoch = epoch + 1
                # the first process writes a checkpoint; it is complete before any process goes on
                write_checkpoint(checkpoint_dir if rank == 0 else None, run, result, config, model, optimizer,
                                 method, gens, scaler, average)
                barrier()
                say(_format_epoch(record, config.epochs))
    # the model kept: the best epoch's weights, or the last ones (averaged, with ema_decay)
    result.train_seconds = run.seconds
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    else:
        result.selected_epoch = config.epochs
        if average is not None and average.weights is not None:
            model.load_state_dict(average.weights)
    return result


def check_outputs(model: nn.Module, train_set: ExplanationDataset) -> None:
    """Run ``model`` once on the first two training examples (eval mode, no gradients, mode restored) and
    raise a one-line ``UserError`` unless it returns finite logits of shape (batch, num_classes): a tuple
    or dict, integer outputs, a wrong number of outputs, NaN weights, or a forward pass that fails on
    these inputs. Nothing training draws on is touched: the global RNG is forked, the run's generators are
    not used, and a model with lazy (uninitialised) modules is run on a copy, so that it is initialised
    where training initialises it."""
    if len(train_set) == 0:
        return
    batch = train_set.batch(torch.arange(min(2, len(train_set)))).to(model_device(model))
    lazy = any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in model.modules())
    probe = copy.deepcopy(model) if lazy else model
    where = f"training data {train_set.name!r} (before training)"
    with torch.random.fork_rng(devices=[]), eval_mode(probe), torch.no_grad():
        try:
            logits = probe(batch.x)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"model: its forward pass on {where}, inputs of shape {tuple(batch.x.shape)}, raised "
                            f"{first_line(exc)}") from exc
    check_logits(logits, train_set.num_classes, where, len(batch))


def _resolve(config: TrainConfig, data: DataSplits | ExplanationDataset
             ) -> tuple[TrainConfig, ExplanationDataset, Optional[ExplanationDataset]]:
    """``config`` with unset epochs and batch size set to the dataset's defaults, the training split and the
    validation split (None for a bare dataset). Refuses an empty training split and selection without validation."""
    config = config.replace(epochs=config.epoch_count(), batch_size=config.batch_size_used())
    train_set = data.train if isinstance(data, DataSplits) else data
    val_set = data.val if isinstance(data, DataSplits) else None
    if len(train_set) == 0:
        raise UserError(f"{train_set.name}: the training split is empty")
    if config.select != "last" and val_set is None:
        raise UserError(f"select={config.select!r} needs a validation split")
    if config.compare_selections and (val_set is None or not len(val_set) or not len(data.test)):
        raise UserError("compare_selections needs a validation split and a test split, neither empty")
    return config, train_set, val_set


def _broken_validation(val_set, config: TrainConfig):
    """The validation split with the shortcut broken (``data.shortcut_break``) when ``select`` reads it, or when
    comparing the rules and the split has masks to break in memory; else None."""
    if uses_broken_validation(config.select):
        return break_shortcut(val_set, config.val_break, config.seed)
    in_memory = getattr(val_set, "is_text", False) or isinstance(val_set, ExplanationDataset)  # not streamed
    if config.compare_selections and in_memory and has_annotations(val_set):
        return break_shortcut(val_set, config.val_break, config.seed)
    return None


def _logger(log: Optional[Callable[[str], None]], rank: int) -> Callable[[str], None]:
    """``log`` on the first process; a no-op on the others and without ``log``."""
    return log if log is not None and rank == 0 else (lambda line: None)


def _train_epoch(epoch, run, model, step_fn, optimizer, scaler, augmentation, train_set, config, gens, bar, say,
                 average=None) -> tuple[dict, int]:
    """One pass over the shuffled training split, counting steps in ``run.step``: per batch the method's loss
    (on the model's device, under autocast for bf16 / fp16), a stop on (or skip of) a non-finite loss, the
    scheduled learning rate, backward (loss-scaled for fp16), an optimiser step and the update of the weight
    average (with one). Returns the sums of the loss
    and of each term over the batches used, and the number of batches skipped."""
    rank, size = world()
    device = model_device(model)
    total_steps = config.epochs * train_set.num_batches(config.batch_size)
    sums: dict[str, float] = {}
    skipped = 0
    with train_mode(model):
        # the epoch's batch order (from the shuffling stream only) and this process's share of each batch;
        # the dataset decodes them (in its workers, for a streaming folder) in that order
        order = [(shard(index, rank, size) if size > 1 else index, len(index))
                 for index in train_set.index_batches(config.batch_size, shuffle=True, generator=gens["shuffle"])]
        for (local, n_global), batch in zip(order, train_set.iter_batches([local for local, _ in order])):
            # the method's loss on this process's share of the batch
            ctx = StepContext(epoch=epoch, num_epochs=config.epochs, step=run.step, generator=gens["method"],
                              input_range=train_set.input_range)
            batch = batch.to(device)
            if augmentation is not None:
                batch = augmentation(batch, gens["augment"], train_set.input_range)
            with autocast(device, config.precision), input_grad_scale(scaler.get_scale() if scaler else 1.0):
                out = step_fn(batch, ctx)
            run.step += 1
            bar.update(1)
            # a non-finite loss stops training, or skips the batch
            problem = _nonfinite_message(out, run.step - 1, epoch)
            if problem is not None:
                if scaler is not None and scaler.get_scale() > 1.0:
                    # fp16: scaled input gradients overflowed at this loss scale; halve it, skip the batch
                    scale = _lower_scale(scaler, device)
                    skipped += 1
                    say(f"skipped: {problem}; fp16 loss scale lowered to {scale:g}")
                    continue
                if config.on_nonfinite == "stop":
                    raise NonFiniteLossError(problem)
                skipped += 1
                say(f"skipped: {problem}")
                continue
            # a loss that nothing trainable feeds (outputs detached from the weights) has no gradient
            if not out.loss.requires_grad:
                raise UserError(f"the loss at epoch {epoch + 1}, step {run.step - 1} does not depend on any "
                                "trainable parameter (are the model's outputs detached, computed under no_grad or "
                                "outside torch?)")
            # the scheduled learning rate, backward (scaled to the global batch under DDP), step
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, run.step - 1, total_steps)
            optimizer.zero_grad(set_to_none=True)
            loss = out.loss * loss_scale(len(local), n_global, size) if size > 1 else out.loss
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:  # fp16: scaled backward; a step whose gradients overflowed is skipped, the scale adapts
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            if average is not None:
                average.update(model)
            # the sums of the loss and its terms
            sums["loss"] = sums.get("loss", 0.0) + out.loss.item()
            for key, value in out.terms.items():
                sums[key] = sums.get(key, 0.0) + value.item()
    return sums, skipped


def _lower_scale(scaler: "torch.amp.GradScaler", device: torch.device) -> float:
    """Halve the fp16 loss scale (what the scaler does after an overflowing step) and return the new scale."""
    scaler.scale(torch.zeros((), device=device))  # the scaler's state exists once it has scaled something
    scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
    return scaler.get_scale()


def _epoch_record(epoch, sums, skipped, steps_per_epoch, model, val_set, epoch_start, broken_val=None,
                  test_set=None, average=None) -> dict:
    """The history record of an epoch: its number, the mean loss and terms over the batches used, the
    batches skipped (if any), accuracy and worst-group accuracy on the validation split (and on it with the
    shortcut broken, when selecting on that or comparing the rules), seconds (training and validation), and
    when comparing the rules the test split's accuracy and worst-group accuracy (``test_*``, read by no rule).
    With a weight ``average`` every split is measured on the averaged weights, and when comparing the rules
    the test split also on the weights themselves (``test_raw_*``)."""
    if average is not None:
        with average.applied(model):
            record = _epoch_record(epoch, sums, skipped, steps_per_epoch, model, val_set, epoch_start, broken_val,
                                   test_set)
        if test_set is not None:
            test = evaluate(model, test_set, mask_share=False)
            record.update(zip(RAW_TEST_KEYS, (test["accuracy"], test["worst_group_accuracy"])))
        return record
    used = max(steps_per_epoch - skipped, 1)
    record = {"epoch": epoch + 1}
    record.update({k: v / used for k, v in sums.items()})
    if skipped:
        record["skipped_batches"] = skipped
    if val_set is not None and len(val_set):
        try:
            val = evaluate(model, val_set, mask_share=False)
        except UserError as exc:  # e.g. weights that became NaN while the loss was still finite
            raise UserError(f"validation after epoch {epoch + 1}: {exc}") from None
        record["val_accuracy"] = val["accuracy"]
        record["val_worst_group_accuracy"] = val["worst_group_accuracy"]
    if broken_val is not None:
        broken = evaluate(model, broken_val, mask_share=False)
        record["val_broken_accuracy"] = broken["accuracy"]
        record["val_broken_worst_group_accuracy"] = broken["worst_group_accuracy"]
    record["seconds"] = time.perf_counter() - epoch_start
    if test_set is not None:
        test = evaluate(model, test_set, mask_share=False)
        record["test_accuracy"] = test["accuracy"]
        record["test_worst_group_accuracy"] = test["worst_group_accuracy"]
    return record


def _select_best(record, config, model, run, result, average=None) -> None:
    """With ``select`` on a validation metric: when this epoch beats the best so far, make it the selected
    epoch and keep a copy of its weights (of the averaged ones, with a weight ``average``)."""
    if config.select != "last" and is_better(record[config.select], run.best_score):
        run.best_score, result.selected_epoch = record[config.select], record["epoch"]
        state = average.weights if average is not None and average.weights is not None else model.state_dict()
        run.best_state = copy.deepcopy(state)


def _format_epoch(record: dict, epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}"]
    parts += [f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "seconds", *TEST_KEYS, *RAW_TEST_KEYS)]
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)
