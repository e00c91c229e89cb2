"""Built-in models: the default MLP (784-100-100-10), the 784-50-30-10 MLP of Ross et al. 2017, a wider
MLP, two small CNNs, or any nn.Module.

Built-in models are plain ``nn.Sequential`` stacks of standard layers, so that bound propagation and
contextual decomposition (which dispatch on layer type) work on them. Factories take the input shape
(without the batch dimension) and the number of classes.
"""

from __future__ import annotations

import math

from torch import nn

from ..errors import UserError
from .registry import register_model

#: the widest layer a built-in model takes (units or channels)
MAX_WIDTH = 1 << 16


def widths(name: str, option: str, values) -> tuple[int, ...]:
    """``values`` (one width or a list) as a tuple of layer widths in [1, MAX_WIDTH]; anything else is a
    one-line error naming the model and option."""
    items = values if isinstance(values, (list, tuple)) else [values]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_WIDTH for v in items):
        raise UserError(f"model {name!r}: option {option} must be integer widths in [1, {MAX_WIDTH}], got {values!r}")
    return tuple(items)


def mlp_stack(input_shape, num_classes, hidden) -> nn.Sequential:
    """flatten -> (Linear, ReLU) per hidden width -> Linear to the classes."""
    hidden = widths("mlp", "hidden", list(hidden) if isinstance(hidden, tuple) else hidden)
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@register_model("mlp")
def mlp(input_shape, num_classes, hidden: tuple[int, ...] = (100, 100)) -> nn.Sequential:
    """The default model: two hidden layers of 100 ReLU units (flatten -> 100 -> 100 -> classes).

    Why this default rather than Ross's 50-30 (``mlp-ross``): docs/results/method-tuning.md#mlp
    """
    return mlp_stack(input_shape, num_classes, hidden)


@register_model("mlp-ross")
def mlp_ross(input_shape, num_classes, hidden: tuple[int, ...] = (50, 30)) -> nn.Sequential:
    """Ross et al. 2017's two-hidden-layer MLP: flatten -> 50 -> 30 -> classes, ReLU."""
    return mlp_stack(input_shape, num_classes, hidden)


@register_model("mlp-wide")
def mlp_wide(input_shape, num_classes, hidden: tuple[int, ...] = (512, 512)) -> nn.Sequential:
    """A wider MLP: flatten -> 512 -> 512 -> classes, ReLU."""
    return mlp_stack(input_shape, num_classes, hidden)


@register_model("cnn")
def cnn(input_shape, num_classes, channels: tuple[int, int] = (16, 32), hidden: int = 128) -> nn.Sequential:
    """A small CNN: two 3x3 conv + ReLU blocks (each followed by 2x2 max pooling when the image is at
    least 8 pixels wide), then a 128-unit hidden layer."""
    return _conv_net("cnn", input_shape, num_classes, channels, hidden, stride=1)


@register_model("cnn-strided")
def cnn_strided(input_shape, num_classes, channels: tuple[int, int] = (16, 32), hidden: int = 256) -> nn.Sequential:
    """A cheaper CNN: two 3x3 convs with stride 2 (no pooling; stride 1 once the image is under 8
    pixels wide) + ReLU, then a 256-unit hidden layer. Each conv computes 4x fewer outputs than
    ``cnn``'s. The default model of ``decoy-mnist-half``, where the digit sits in either half.
    Why: docs/results/method-tuning.md#cnn-strided"""
    return _conv_net("cnn-strided", input_shape, num_classes, channels, hidden, stride=2)


def _conv_net(name, input_shape, num_classes, channels, hidden, stride) -> nn.Sequential:
    if len(input_shape) != 3:
        raise UserError(f"model {name!r} needs image inputs (C, H, W), got input shape {tuple(input_shape)}")
    c, h, w = input_shape
    channels, (hidden,) = widths(name, "channels", channels), widths(name, "hidden", hidden)
    layers: list[nn.Module] = []
    for out in channels:
        shrink = min(h, w) >= 8
        s = stride if shrink else 1
        layers += [nn.Conv2d(c, out, 3, stride=s, padding=1), nn.ReLU()]
        c = out
        if shrink:
            if s == 1:
                layers.append(nn.MaxPool2d(2))
            h, w = (h // 2, w // 2) if s == 1 else ((h - 1) // 2 + 1, (w - 1) // 2 + 1)
    layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)
