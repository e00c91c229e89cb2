"""Resuming training: what a checkpoint must agree on, and the state of a run written to and read from one.

A checkpoint (``train.checkpoint``) holds the weights, the optimiser, the method's schedules, every random
stream, the loss scaler (fp16), the weight average (``ema_decay``), counters, history and the best weights so
far; restoring all of them continues training exactly as if it had never stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..devices import model_device
from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig, with_field_defaults

#: config fields that may differ between a checkpoint and the run resuming it
RESUMABLE_CHANGES = ("epochs", "threads", "device")


def resume_differences(saved: dict, config: TrainConfig) -> list[str]:
    """The config fields (other than RESUMABLE_CHANGES) in which a checkpoint's config ``saved`` differs from
    ``config``. A field missing from ``saved`` was added to TrainConfig after the checkpoint was written, so
    that run had the field's default (e.g. ``precision`` fp32, no ``augment``)."""
    saved = with_field_defaults(saved)
    current = config.to_dict()
    return sorted(k for k in set(saved) | set(current)
                  if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))


def _restore(checkpoint_dir, config, model, optimizer, method, gens, scaler, average) -> Optional[dict]:
    path = latest_checkpoint(checkpoint_dir)
    if path is None:
        return None
    ckpt = load_checkpoint(path)
    differ = resume_differences(ckpt["meta"]["config"], config)
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
    device = model_device(model)
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    if scaler is not None:
        scaler.load_state_dict(state["scaler"])
    if average is not None:
        average.load_state_dict(state["average"], model)
    state["best_state"] = ckpt["best"]
    return state


@dataclass
class RunState:
    """Where training stands: epochs done, optimiser steps taken, training seconds so far, and the best
    validation score and weights so far (only when selecting on validation)."""

    epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    best_score: float = -math.inf
    best_state: Optional[dict] = None




def resume_run(checkpoint_dir, config, model, optimizer, method, gens, scaler, average, result, say) -> RunState:
    """Restore model, optimiser, method, random streams, weight average, history and selection from the latest
    checkpoint in ``checkpoint_dir`` and return where training stands; a fresh start without a directory or a
    checkpoint."""
    restored = (_restore(checkpoint_dir, config, model, optimizer, method, gens, scaler, average)
                if checkpoint_dir else None)
    if restored is None:
        return RunState()
    result.history, result.selected_epoch = list(restored["history"]), restored["selected_epoch"]
    say(f"resuming after epoch {restored['epoch']} from {checkpoint_dir}")
    return RunState(epoch=restored["epoch"], step=restored["step"], seconds=restored["seconds"],
                best_score=restored["best_score"], best_state=restored["best_state"])




def write_checkpoint(checkpoint_dir, run, result, config, model, optimizer, method, gens, scaler, average=None
                      ) -> None:
    """Write the checkpoint of epoch ``run.epoch`` into ``checkpoint_dir`` (nothing when it is None): weights,
    optimiser, method and random-stream states, the weight average, counters, history and the best weights so
    far."""
    if checkpoint_dir is None:
        return
    state = {"epoch": run.epoch, "step": run.step, "seconds": run.seconds, "optimizer": optimizer.state_dict(),
             "method": method.state_dict(), "history": result.history, "best_score": run.best_score,
             "selected_epoch": result.selected_epoch,
             "rng": {**{k: g.get_state() for k, g in gens.items()}, "torch": torch.get_rng_state()}}
    device = model_device(model)
    if device.type == "cuda":  # in-model randomness (dropout) on the GPU draws from the device's generator
        state["rng"]["cuda"] = torch.cuda.get_rng_state(device)
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    if average is not None:
        state["average"] = average.state_dict()
    save_checkpoint(checkpoint_dir, run.epoch, model.state_dict(), state, config.to_dict(), run.best_state)
