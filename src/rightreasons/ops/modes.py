"""Context managers that switch a model's mode and always restore it (even when the body raises)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    saved = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        yield model
    finally:
        for module, was_training in saved.items():
            module.training = was_training


def eval_mode(model: nn.Module):
    """``with eval_mode(model): ...`` runs the body in eval mode, restoring every submodule's mode."""
    return _mode(model, False)


def train_mode(model: nn.Module):
    """``with train_mode(model): ...`` runs the body in train mode, restoring every submodule's mode."""
    return _mode(model, True)
