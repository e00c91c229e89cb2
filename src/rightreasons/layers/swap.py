"""Run a model with the fused double-backward layers in place of its own, for the duration of a loss.

``fused_double_backward(model)`` gives every ``torch.nn.Conv2d`` and ``torch.nn.BatchNorm2d`` of the model
(exactly those types, not subclasses, which may override ``forward``) the class of this package's drop-in
subclass while the block runs, and gives the original class back afterwards, also on an exception. The
subclasses add no state, so parameters, buffers, hooks and state-dict keys are untouched; the autograd graph
recorded inside the block keeps the fused backward after it. Methods whose loss differentiates input
gradients (``Method.needs_input_grad`` / ``double_backward``) compute their loss inside it, so any model
(the built-in ResNets, a user's torchvision or timm backbone) gets the cheaper double backward, and every
other use of the model sees its own layer types.
"""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from .batch_norm import BatchNorm2d
from .conv import Conv2d

_FUSED = {nn.Conv2d: Conv2d, nn.BatchNorm2d: BatchNorm2d}


@contextmanager
def fused_double_backward(model: nn.Module):
    swapped = []
    try:
        for m in model.modules():
            fused = _FUSED.get(type(m))
            if fused is not None:
                original = type(m)
                m.__class__ = fused
                swapped.append((m, original))
        yield model
    finally:
        for m, original in swapped:
            m.__class__ = original
