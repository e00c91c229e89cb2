"""Interval bound propagation (IBP; Gowal et al., ICCV 2019), as IBP-Ex uses it (Heo et al., NeurIPS 2023).

For every input in the box [lower, upper] the logits lie in the returned interval. Intervals travel in
centre/radius form (c, r): an affine layer maps them to (W c + b, |W| r), a monotone elementwise
layer maps the end points, max pooling (monotone) maps the end points, average pooling and reshapes
(linear, non-negative) map c and r. A rule table keyed by the exact layer type does the dispatch;
nested ``nn.Sequential`` containers are walked. Every unsupported module is collected first and
reported in ONE ``UserError``; nothing is silently skipped. All rules are differentiable, so the bounds
can be trained through. Bounds are exact interval arithmetic up to floating-point rounding (no
outward rounding): compare in float64 when certifying tight margins.

The margin bound folds the specification C = e_y - e_k into the last ``nn.Linear`` (W, b):
    z_y - z_k >= (W_y - W_k) c + b_y - b_k - |W_y - W_k| r,
which is never looser than lower(z_y) - upper(z_k). Worst-case logits for the CE are its negation.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError


class Interval:
    """A box in centre/radius form; ``lower``/``upper`` are derived."""

    __slots__ = ("centre", "radius")

    def __init__(self, centre: torch.Tensor, radius: torch.Tensor):
        self.centre, self.radius = centre, radius

    @classmethod
    def from_bounds(cls, lower: torch.Tensor, upper: torch.Tensor) -> "Interval":
        return cls((upper + lower) / 2, (upper - lower) / 2)

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


Rule = Callable[[nn.Module, Interval], Interval]
RULES: dict[type, Rule] = {nn.Linear: _linear, nn.Identity: _identity}
RULES.update({t: _conv for t in (nn.Conv1d, nn.Conv2d, nn.Conv3d)})
RULES.update({t: _batchnorm for t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)})
RULES.update({t: _identity for t in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)})
RULES.update({t: _positive_linear for t in (nn.Flatten, nn.Unflatten, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                                             nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)})
RULES.update({t: _monotone for t in (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
    nn.Hardtanh, nn.Hardsigmoid, nn.LogSigmoid, nn.Tanhshrink, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)})
#: layers whose centre output is exactly the layer's own forward of the centre (lets the clean pass share it)
_CENTRE_IS_FORWARD = {_linear, _conv, _batchnorm, _positive_linear}


def _problem(m: nn.Module) -> Optional[str]:
    """Why ``m`` cannot be bounded, or None."""
    if type(m) not in RULES:
        return "no IBP rule"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.training:
            return "batch norm in train mode (put the model in eval mode)"
        if m.running_var is None:
            return "batch norm without running statistics"
    if isinstance(m, nn.LeakyReLU) and m.negative_slope < 0:
        return "LeakyReLU with negative slope (not monotone)"
    if isinstance(m, (nn.ELU, nn.CELU)) and m.alpha < 0:
        return "ELU with negative alpha (not monotone)"
    if getattr(m, "return_indices", False):
        return "pooling with return_indices"
    return None


def _leaves(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    if type(model).forward is nn.Sequential.forward:
        out = []
        for name, child in model.named_children():
            out += _leaves(child, f"{prefix}.{name}" if prefix else name)
        return out
    return [(prefix or "<model>", model)]


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in order (nested Sequentials flattened); raises one ``UserError`` naming
    every module interval bound propagation does not support."""
    leaves = _leaves(model)
    bad = [f"{name} ({type(m).__name__}: {why})" for name, m in leaves if (why := _problem(m))]
    if bad:
        known = ", ".join(sorted({t.__name__ for t in RULES}))
        raise UserError(f"interval bounds: unsupported module(s): {'; '.join(bad)}. "
                        f"Supported: {known}, nested Sequential")
    return leaves


def _propagate(leaves, box: Interval, point: Optional[torch.Tensor] = None):
    """Push ``box`` (and optionally the clean ``point``) through ``leaves``; reuse the centre pass while
    the box is centred at the point."""
    for _, m in leaves:
        rule = RULES[type(m)]
        shared = point is not None and box.centre is point
        box = rule(m, box)
        if point is not None:
            point = box.centre if shared and rule in _CENTRE_IS_FORWARD else m(point)
    return box, point


def _check_box(lower: torch.Tensor, upper: torch.Tensor) -> None:
    if lower.shape != upper.shape:
        raise UserError(f"interval bounds: lower {tuple(lower.shape)} and upper {tuple(upper.shape)} differ in shape")
    if bool((lower > upper).any()):
        raise UserError("interval bounds: lower > upper somewhere in the input box")


def interval_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lower_logits, upper_logits)`` enclosing f(x') for every x' with lower <= x' <= upper."""
    _check_box(lower, upper)
    box, _ = _propagate(layers(model), Interval.from_bounds(lower, upper))
    return box.lower, box.upper


def _margin(last: nn.Linear, box: Interval, y: torch.Tensor) -> torch.Tensor:
    z = last(box.centre)
    margin_centre = z.gather(1, y.view(-1, 1)) - z
    rows = F.one_hot(y, last.weight.shape[0]).to(last.weight.dtype) @ last.weight  # W_y per example (B, H)
    spec = rows.unsqueeze(1) - last.weight.unsqueeze(0)  # (B, K, H): rows W_y - W_k
    margin_radius = (spec.abs() * box.radius.unsqueeze(1)).sum(2)  # (faster than a bmm of tiny matrices)
    return margin_centre - margin_radius


def _split_last(model: nn.Module):
    leaves = layers(model)
    last = leaves[-1][1]
    if type(last) is not nn.Linear:
        raise UserError(f"margin bounds need the model to end in nn.Linear; its last layer is {type(last).__name__}")
    return leaves[:-1], last


def check_bounded(model: nn.Module, margin: bool = False) -> None:
    """Raise one :class:`UserError` naming every module of ``model`` (in its current mode) that interval
    bounds cannot propagate through; with ``margin``, also when the model does not end in ``nn.Linear``."""
    if margin:
        _split_last(model)
    else:
        layers(model)


def _check_labels(y: torch.Tensor, n: int) -> None:
    if y.shape != (n,) or y.is_floating_point():
        raise UserError(f"margin bounds: y must be integer labels of shape ({n},), got {y.dtype} {tuple(y.shape)}")


def margin_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, K) lower bounds on z_y - z_k over the box (0 at k = y); the spec is folded into the last Linear."""
    _check_box(lower, upper)
    _check_labels(y, lower.shape[0])
    body, last = _split_last(model)
    box, _ = _propagate(body, Interval.from_bounds(lower, upper))
    return _margin(last, box, y)


def worst_case_logits(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logits whose CE upper-bounds the CE at every point of the box: ``-margin_bounds`` (Gowal et al.)."""
    return -margin_bounds(model, lower, upper, y)


def _radius_mask(x: torch.Tensor, mask: torch.Tensor, eps: float, where: str, check: bool = True) -> torch.Tensor:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise UserError(f"{where}: eps must be a finite number >= 0, got {eps!r}")
    try:
        mask = mask.to(x.dtype).expand_as(x)
    except RuntimeError:
        raise UserError(f"{where}: mask shape {tuple(mask.shape)} does not broadcast to "
                        f"x shape {tuple(x.shape)}") from None
    if check and mask.numel() and float(mask.min()) < 0:
        raise UserError(f"{where}: mask must be >= 0 (1 marks a feature that may move)")
    return mask


def mask_box(x: torch.Tensor, mask: torch.Tensor, eps: float, bounds: Optional[tuple[float, float]] = None):
    """``(lower, upper) = (x - eps*m, x + eps*m)``, clipped to ``bounds = (lo, hi)`` if given (a value
    already outside the range is never excluded: the box always contains x). Where m = 0 both ends
    are x exactly. The mask must be >= 0 and broadcast to x."""
    mask = _radius_mask(x, mask, eps, "mask_box")
    lower, upper = torch.sub(x, mask, alpha=eps), torch.add(x, mask, alpha=eps)
    if bounds is not None:
        lo, hi = bounds
        if not lo <= hi:
            raise UserError(f"mask_box: bounds must be (lo, hi) with lo <= hi, got {bounds!r}")
        # max(x - r, min(lo, x)) == min(max(x - r, lo), x), likewise for the upper end
        if torch.is_grad_enabled() and (lower.requires_grad or upper.requires_grad):
            lower, upper = torch.minimum(lower.clamp(min=lo), x), torch.maximum(upper.clamp(max=hi), x)
        else:  # in place: inputs are large and fresh allocations cost page faults on CPU
            lower = torch.minimum(lower.clamp_(min=lo), x, out=lower)
            upper = torch.maximum(upper.clamp_(max=hi), x, out=upper)
    return lower, upper


def masked_ibp(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, eps: float,
               bounds: Optional[tuple[float, float]] = None, clean: bool = False, check_mask: bool = True):
    """Margin lower bounds (B, K) over the box x +- eps*m (see :func:`mask_box`); with ``clean=True``
    return ``(f(x), margins)`` where f(x) is computed in the same pass (without clipping, the box is
    centred at x and the clean forward shares the centre's affine layers up to the first non-linearity).
    ``check_mask=False`` skips the test that the mask is >= 0 (for masks already validated, e.g. a dataset's)."""
    _check_labels(y, x.shape[0])
    body, last = _split_last(model)
    if bounds is None:
        mask = _radius_mask(x, mask, eps, "masked_ibp", check_mask)
        box = Interval(x, mask if eps == 1 else eps * mask)
    else:
        box = Interval.from_bounds(*mask_box(x, mask, eps, bounds))
    box, point = _propagate(body, box, x if clean else None)
    margins = _margin(last, box, y)
    return (last(point), margins) if clean else margins
