"""Loading a weights file the user has into a model: ``.safetensors``, or a torch file of tensors read with
``torch.load(weights_only=True)`` (which refuses anything that would unpickle code); never a download.

A bare state dict, or one under ``"state_dict"`` or ``"model"``; a ``module.`` prefix (DDP) is dropped. Tensors
whose shape differs from the model's (an ImageNet head for another number of classes) are skipped and
returned; other missing or unexpected keys, non-finite values and unreadable files are one-line errors
naming the file.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..files import failure_cause, shown_path, shown_value

#: how many key names an error lists
SHOWN_KEYS = 5


def _describe(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def read_weights(path: str | os.PathLike) -> dict:
    """The tensors of a .safetensors or torch file, as a state dict."""
    shown = shown_path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise UserError(f"weights file {shown}: cannot read it ({failure_cause(exc)})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"weights file {shown}: not a regular file")
    if Path(path).suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # SafetensorError, OSError, a header that is not JSON, ...
            raise UserError(f"weights file {shown}: cannot read it as safetensors ({failure_cause(exc)})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            what = f"the Python object {found.group(1)}" if found else "Python objects other than tensors"
            raise UserError(f"weights file {shown}: refused, it needs {what}, and unpickling it could run code "
                            "(read with torch.load(weights_only=True)); save a state dict of tensors, or a "
                            ".safetensors file") from None
        raise UserError(f"weights file {shown}: cannot read it as a torch file (damaged, or another format: "
                        f"{_describe(exc)}); give a .safetensors file or a torch.save'd state dict") from None
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"weights file {shown}: holds no state dict (a dict of tensors, or one under \"state_dict\" "
                        f"or \"model\"), but {type(obj).__name__}{' (empty)' if isinstance(obj, dict) else ''}")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise UserError(f"weights file {shown}: entry {shown_value(key, 60)} is a {type(value).__name__}, "
                            "not a tensor")
    return dict(obj)


def _listed(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def load_weights(model: nn.Module, path: str | os.PathLike, name: str = "model") -> dict[str, tuple]:
    """Load the weights file ``path`` (.safetensors, or a torch file of tensors) into ``model`` (named
    ``name`` in messages). Returns the keys skipped because their shape differs from the model's, with their
    shape in the file; a missing key (other than BatchNorm's ``num_batches_tracked``), an unexpected key, a
    non-finite value or a file that cannot be read is a one-line :class:`UserError` naming the file."""
    shown = shown_path(path)
    state = read_weights(path)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    skipped = {k: tuple(v.shape) for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)}
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        parts = ([f"missing {_listed(missing)}"] if missing else []) + (
            [f"unexpected {_listed(unexpected)}"] if unexpected else [])
        raise UserError(f"weights file {shown} does not fit model {name!r}: {'; '.join(parts)}")
    kept = {k: v for k, v in state.items() if k not in skipped}
    for key, value in kept.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise UserError(f"weights file {shown}: {key} holds values that are not finite (NaN or inf)")
    try:
        model.load_state_dict(kept, strict=False)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UserError(f"weights file {shown}: cannot load it into model {name!r} ({_describe(exc)})") from None
    return skipped
