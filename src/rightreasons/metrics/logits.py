"""Checks that a model's outputs are logits: a floating-point tensor of shape (batch, num_classes), finite.

Every metric that runs a model, and ``fit`` before its first step, uses them, so that a model with NaN
weights, a wrong number of outputs, a tuple or dict output (Hugging Face models) or integer outputs
gives one :class:`UserError` naming the data instead of a traceback or a plausible-looking number:

- :func:`check_logits` on the logits a metric uses (per batch: one ``isfinite`` check);
- :func:`checked_outputs`, a context manager with forward hooks that check the structure of every
  output of the model (no device synchronisation), also where an operation (an input gradient, an
  attack) consumes the logits before the metric sees them, and that turn an exception raised inside
  the model's forward pass into a one-line error naming the data.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch
from torch import nn

from ..errors import UserError


def first_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (just the type name when there is no message)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def check_structure(logits: Any, num_classes: Optional[int], where: str, batch: Optional[int] = None) -> None:
    """Refuse anything but a floating-point tensor of shape (``batch``, ``num_classes``) (None: any size
    there). ``where`` names the data, e.g. "dataset 'toy-colors'"."""
    classes = "num_classes" if num_classes is None else num_classes
    if not isinstance(logits, torch.Tensor):
        raise UserError(f"model outputs on {where}: got a {type(logits).__name__}, expected a tensor of logits "
                        f"of shape (batch, {classes}) (make forward return the logits tensor, e.g. "
                        "outputs.logits of a Hugging Face model)")
    if not logits.is_floating_point():
        raise UserError(f"model outputs on {where}: got {logits.dtype} values, expected floating-point logits")
    expected = (logits.shape[0] if batch is None and logits.dim() else batch,
                logits.shape[1] if num_classes is None and logits.dim() == 2 else num_classes)
    if logits.dim() != 2 or logits.shape != expected:
        rows = "batch" if expected[0] is None else expected[0]
        raise UserError(f"model outputs on {where}: got shape {tuple(logits.shape)}, expected ({rows}, {classes}) "
                        "= (batch, num_classes), one logit per class")


def check_finite(logits: torch.Tensor, where: str) -> None:
    """Refuse NaN or infinite logits (one ``isfinite`` reduction)."""
    if not bool(torch.isfinite(logits).all()):
        raise UserError(f"model outputs on {where} are NaN or infinite (are the model's weights finite?)")


def check_logits(logits: Any, num_classes: Optional[int], where: str, batch: Optional[int] = None) -> torch.Tensor:
    """:func:`check_structure` and :func:`check_finite`; returns ``logits``."""
    check_structure(logits, num_classes, where, batch)
    check_finite(logits, where)
    return logits


def check_module(model: Any) -> None:
    """Refuse anything but an ``nn.Module`` whose ``nn.Module.__init__`` ran (a subclass that forgot to
    call ``super().__init__()`` has no parameter table) and whose tensors are on one real device."""
    if not isinstance(model, nn.Module):
        raise UserError(f"model: expected an nn.Module, got {type(model).__name__}")
    if "_parameters" not in vars(model):
        raise UserError(f"model: {type(model).__name__}.__init__ does not call super().__init__(), so it is not "
                        "a working nn.Module")
    devices = sorted({str(t.device) for t in (*model.parameters(), *model.buffers())})
    if "meta" in devices:
        raise UserError("model: some of its tensors are on the meta device (shapes without values); build or load "
                        "it on a real device")
    if len(devices) > 1:
        raise UserError(f"model: its parameters and buffers are on several devices ({', '.join(devices)}); move it "
                        "to one with model.to(device)")


#: how autograd says that a differentiated tensor (here: the input) is not in the graph of the output
_UNUSED_INPUT = "appears to not have been used in the graph"


class _Watch:
    """The hooks of :func:`checked_outputs`: how many calls of the model are under way, and the check of
    each output."""

    def __init__(self, num_classes: Optional[int], where: str):
        self.num_classes, self.where, self.depth = num_classes, where, 0

    def before(self, module: nn.Module, args: tuple) -> None:
        self.depth += 1

    def after(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.depth -= 1
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        check_structure(output, self.num_classes, self.where, x.shape[0] if x is not None and x.dim() else None)
        if x is not None and x.requires_grad and torch.is_grad_enabled() and not output.requires_grad:
            raise UserError(f"model outputs on {self.where} do not depend on the input through autograd (detached, "
                            "or computed outside torch?); input gradients need a differentiable model")


@contextmanager
def checked_outputs(model: nn.Module, num_classes: Optional[int], where: str) -> Iterator[nn.Module]:
    """Within the block every call of ``model`` has its output checked with :func:`check_structure` (and
    refused if it is detached from an input that requires grad), and an exception raised inside the
    model's forward pass (a layer that does not fit the input's shape or dtype, batch norm on one example)
    becomes a one-line ``UserError`` naming ``where``, chained to the original; so does an input gradient
    of a model whose outputs do not depend on its input. The hooks are removed afterwards. A ScriptModule
    takes no hooks: there only the explicit :func:`check_logits` calls apply. Refuses a ``model`` that is
    not an ``nn.Module``."""
    check_module(model)
    watch = _Watch(num_classes, where)
    try:
        handles = [model.register_forward_pre_hook(watch.before), model.register_forward_hook(watch.after)]
    except RuntimeError:  # torch.jit.ScriptModule
        handles = []
    try:
        yield model
    except UserError:
        raise
    except Exception as exc:
        if watch.depth > 0:  # raised while a call of the model was under way: in its forward pass
            raise UserError(f"model: its forward pass on {where} raised {first_line(exc)}") from exc
        if isinstance(exc, RuntimeError) and _UNUSED_INPUT in str(exc):
            raise UserError(f"model outputs on {where} do not depend on the input, so its input gradients are "
                            "undefined (does the model ignore its input?)") from exc
        raise
    finally:
        for handle in handles:
            handle.remove()
