"""In what precision training runs: ``--precision fp32|bf16|fp16``.

``bf16`` and ``fp16`` run the method's loss (every forward pass) under ``torch.autocast`` on the model's
device; the backward pass runs outside it, as PyTorch's automatic mixed precision recipe says. ``fp16``
also scales the loss (``torch.amp.GradScaler``), and the input gradients that methods differentiate
(gradient penalties, integrated gradients, attack steps) are taken of the scaled output and unscaled
before they are used, the "gradient penalty" recipe of PyTorch's AMP examples:

    g = autograd.grad(s * output, x, create_graph=True)[0] / s,      s = the scaler's current scale

(:func:`input_grad`, with ``s`` set by the trainer through :func:`input_grad_scale`; s = 1 outside
training, where the gradient is exactly ``autograd.grad(output, x)``). Interval bounds are computed in
float32 whatever the precision.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Optional, Sequence

import torch

from .errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_SCALE: contextvars.ContextVar[float] = contextvars.ContextVar("input_grad_scale", default=1.0)


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise UserError(f"precision {name!r}: expected one of {', '.join(PRECISIONS)}")
    return name


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (a no-op context for fp32)."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> Optional["torch.amp.GradScaler"]:
    """A loss scaler for fp16, None otherwise (bf16 has float32's exponent range: no scaling needed)."""
    check_precision(precision)
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


@contextlib.contextmanager
def input_grad_scale(scale: float) -> Iterator[None]:
    """Within the block, :func:`input_grad` scales outputs by ``scale`` and unscales the gradients."""
    token = _SCALE.set(float(scale))
    try:
        yield
    finally:
        _SCALE.reset(token)


def input_grad(output: torch.Tensor, inputs: torch.Tensor | Sequence[torch.Tensor], create_graph: bool = False,
               grad_outputs: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, ...]:
    """``torch.autograd.grad(output, inputs)`` taken of the scaled output and unscaled (see the module
    docstring); exactly the plain call when the scale is 1."""
    scale = _SCALE.get()
    if scale == 1.0:
        return torch.autograd.grad(output, inputs, grad_outputs=grad_outputs, create_graph=create_graph)
    grads = torch.autograd.grad(output * scale, inputs, grad_outputs=grad_outputs, create_graph=create_graph)
    return tuple(g / scale for g in grads)
