"""The interval rules of single layers: a box in centre/radius form and how each layer kind maps it.

An affine layer maps (c, r) to (W c + b, |W| r); a monotone elementwise layer or max pooling maps the end
points; average pooling and reshapes (linear with non-negative weights, no offset) map c and r; dropout is
the identity. ``RULES`` is keyed by the exact layer type; ``problem`` says why a layer cannot be bounded.
The walk over a model and batch norm with batch statistics are in ``interval_bounds``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..layers import BatchNorm2d, Conv2d
from ..tokens import TokenMean, embeddings, token_flags


class Interval:
    """A box in centre/radius form; ``lower``/``upper`` are derived."""

    __slots__ = ("centre", "radius")

    def __init__(self, centre: torch.Tensor, radius: torch.Tensor):
        self.centre, self.radius = centre, radius

    @classmethod
    def from_bounds(cls, lower: torch.Tensor, upper: torch.Tensor) -> "Interval":
        return cls((upper + lower) * 0.5, (upper - lower) * 0.5)  # exactly x / 2, and faster

    @property
    def lower(self) -> torch.Tensor:
        return self.centre - self.radius

    @property
    def upper(self) -> torch.Tensor:
        return self.centre + self.radius


# -- rules: one small function per layer kind ---------------------------------------------------
def _linear(m: nn.Linear, box: Interval) -> Interval:
    r = box.radius
    if r.dim() == 2 and r.shape[1] >= 64:  # input boxes are often zero in most features (a small mask):
        idx = (r.sum(0) > 0).nonzero().squeeze(1)  # multiply only the columns where some example may move
        if len(idx) <= r.shape[1] // 4:         # (rows of W^T: a contiguous gather, cheap to back-propagate)
            return Interval(m(box.centre), r.index_select(1, idx) @ m.weight.t().index_select(0, idx).abs())
    return Interval(m(box.centre), F.linear(r, m.weight.abs()))


def _conv(m: nn.modules.conv._ConvNd, box: Interval) -> Interval:
    return Interval(m(box.centre), m._conv_forward(box.radius, m.weight.abs(), None))


def _batchnorm(m: nn.modules.batchnorm._BatchNorm, box: Interval) -> Interval:
    scale = torch.rsqrt(m.running_var + m.eps)
    if m.weight is not None:
        scale = scale * m.weight.abs()
    shape = (1, -1) + (1,) * (box.radius.dim() - 2)
    return Interval(m(box.centre), box.radius * scale.view(shape))


def _monotone(m: nn.Module, box: Interval) -> Interval:
    """Non-decreasing elementwise maps and max pooling: map the end points."""
    return Interval.from_bounds(m(box.lower), m(box.upper))


def _positive_linear(m: nn.Module, box: Interval) -> Interval:
    """Linear maps with non-negative weights and no offset (average pooling, reshapes)."""
    return Interval(m(box.centre), m(box.radius))


def _identity(m: nn.Module, box: Interval) -> Interval:
    return box


def _token_mean(m: TokenMean, box: Interval) -> Interval:
    """The tokens' mean with the flags of the box's centre: exact when the flags do not move (the mask of
    embedded text never covers them)."""
    if bool((box.radius[..., -1] != 0).any()):
        raise UserError("interval bounds: the box moves the token flags of embedded text; mask only embeddings")
    flags = token_flags(box.centre)
    return Interval(m.pool(embeddings(box.centre), flags), m.pool(embeddings(box.radius), flags))


Rule = Callable[[nn.Module, Interval], Interval]
RULES: dict[type, Rule] = {nn.Linear: _linear, nn.Identity: _identity, TokenMean: _token_mean}
RULES.update({t: _conv for t in (nn.Conv1d, nn.Conv2d, nn.Conv3d, Conv2d)})
RULES.update({t: _batchnorm for t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, BatchNorm2d)})
RULES.update({t: _identity for t in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)})
RULES.update({t: _positive_linear for t in (nn.Flatten, nn.Unflatten, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                                             nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)})
RULES.update({t: _monotone for t in (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
    nn.Hardtanh, nn.Hardsigmoid, nn.LogSigmoid, nn.Tanhshrink, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)})
#: layers whose centre output is exactly the layer's own forward of the centre (lets the clean pass share it)
CENTRE_IS_FORWARD = {_linear, _conv, _batchnorm, _positive_linear}


def problem(m: nn.Module) -> Optional[str]:
    """Why ``m`` cannot be bounded, or None."""
    if type(m) not in RULES:
        return "no IBP rule"
    if isinstance(m, nn.LeakyReLU) and m.negative_slope < 0:
        return "LeakyReLU with negative slope (not monotone)"
    if isinstance(m, (nn.ELU, nn.CELU)) and m.alpha < 0:
        return "ELU with negative alpha (not monotone)"
    if getattr(m, "return_indices", False):
        return "pooling with return_indices"
    return None


def batch_statistics(m: nn.Module) -> bool:
    """A batch norm that normalises with the batch's statistics (train mode, or no running statistics)."""
    return isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or m.running_var is None)
