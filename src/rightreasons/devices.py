"""Where a model runs: ``--device auto|cpu|cuda|cuda:N|mps``.

``auto`` is the first GPU when CUDA is available, else Apple's MPS when available, else the CPU. The
device of everything a method, attack, bound or metric creates comes from the model (:func:`model_device`)
or from the tensors it is given, never from a hard-coded name; random numbers are drawn from CPU
generators and moved (:func:`rand_like`), so a seed gives the same draws on every device.
"""

from __future__ import annotations

import re
from typing import Optional

import torch
from torch import nn

from .errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def check_device_name(name: str) -> str:
    """``name`` if it has one of the forms of DEVICE_CHOICES (availability is not checked), else a one-line error."""
    match = _DEVICE.match(name.strip()) if isinstance(name, str) else None
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise UserError(f"device {name!r}: expected one of {', '.join(DEVICE_CHOICES)}")
    return name.strip()


def resolve_device(name: str = "auto") -> torch.device:
    """The ``torch.device`` for ``name``; a one-line error when that device is not available here."""
    name = check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r}: CUDA is not available on this machine (torch {torch.__version__}, "
                            f"built {'with' if torch.backends.cuda.is_built() else 'without'} CUDA); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(f"device {name!r}: this machine has {count} CUDA device(s), numbered 0..{count - 1}")
    if device.type == "mps" and not _mps_available():
        raise UserError(f"device {name!r}: MPS is not available on this machine; use --device cpu")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither (and for
    anything that is not an ``nn.Module``: the checks that refuse it come later, with their own message)."""
    if not isinstance(model, nn.Module) or "_parameters" not in vars(model):
        return torch.device("cpu")
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def rand_like(x: torch.Tensor, generator: Optional[torch.Generator], normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) numbers of x's shape, dtype and device, drawn from ``generator``
    on the generator's own device and moved to x's when they differ."""
    where = generator.device if generator is not None else x.device
    draw = torch.randn if normal else torch.rand
    out = draw(x.shape, generator=generator, dtype=x.dtype, device=where)
    return out if out.device == x.device else out.to(x.device)
