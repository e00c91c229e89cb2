"""Interval bound propagation (IBP; Gowal et al., ICCV 2019), as IBP-Ex uses it (Heo et al., NeurIPS 2023).

For every input in the box [lower, upper] the logits lie in the returned interval. Intervals travel in
centre/radius form (c, r): an affine layer maps them to (W c + b, |W| r), a monotone elementwise
layer maps the end points, max pooling (monotone) maps the end points, average pooling and reshapes
(linear, non-negative) map c and r. A rule table keyed by the exact layer type does the dispatch;
nested ``nn.Sequential`` containers are walked, any other model is traced with ``torch.fx``
(``ops.graph``): residual sums add centres and radii (a - b: centres subtract, radii add), a constant
c maps (c, r) to (c * k + o, |k| r), ``torch.cat`` concatenates both, functional activations and
pooling use the rules of their layers. Every unsupported module or operation is collected first and
reported in ONE ``UserError``; nothing is silently skipped. All rules are differentiable, so the bounds
can be trained through. Bounds are exact interval arithmetic up to floating-point rounding (no
outward rounding): compare in float64 when certifying tight margins. A float16 / bfloat16 box, or
one under autocast, is bounded in float32 with autocast disabled (float32 results).

Batch norm in eval mode is the affine map of its running statistics. In train mode (or without running
statistics) it normalises with the clean batch's per-channel mean and biased variance, used as a fixed
affine map for the box (as certified training does): the clean point (x for ``masked_ibp``, the box
centre otherwise) is propagated alongside the box. Only ``masked_ibp(..., clean=True)``, whose clean
logits are the model's forward pass, updates the running statistics, once; the bounds never do.

The margin bound folds the specification C = e_y - e_k into the last ``nn.Linear`` (W, b):
    z_y - z_k >= (W_y - W_k) c + b_y - b_k - |W_y - W_k| r,
which is never looser than lower(z_y) - upper(z_k). Worst-case logits for the CE are its negation.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from . import graph
from .interval_batch_norm import batch_norm_box, fusable
from .interval_relu import fusable as relu_fusable
from .interval_relu import relu_box
from .interval_rules import CENTRE_IS_FORWARD, RULES, Interval, batch_statistics, problem

_WHAT = "interval bounds"


def _program(model: nn.Module) -> graph.Program:
    """The model's steps (``ops.graph``); raises one ``UserError`` naming everything unsupported."""
    prog = graph.program(model, frozenset(RULES), _WHAT)
    bad = []
    for step in prog.steps:
        if step.kind == "module" and (why := problem(step.module)):
            bad.append(f"{step.label} ({type(step.module).__name__}: {why})")
        elif step.kind == "unsupported":
            bad.append(f"{step.label}: {step.reason}")
    if bad:
        known = ", ".join(sorted({t.__name__ for t in RULES}))
        raise UserError(f"interval bounds: unsupported module(s) or operation(s): {'; '.join(bad)}. "
                        f"Supported: {known}, nested Sequential; in traced models also +, -, * and / by a "
                        "constant, torch.cat, reshapes, mean, functional activations and pooling")
    return prog


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in order (nested Sequentials flattened; for a traced model its layer steps,
    functional activations as their layers); raises one ``UserError`` naming every module or operation
    interval bound propagation does not support."""
    return [(step.label, step.module) for step in _program(model).modules]


def batch_var_mean(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (biased) variance and mean of x over the batch and spatial dimensions, as batch norm
    takes them: mean(x), then mean((x - mean)^2) (two passes; several times faster on CPU than
    ``torch.var_mean``, differentiable in the same way)."""
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dims, keepdim=True)
    return (x - mean).square().mean(dims), mean.flatten()


class _Value:
    """A box and, optionally, the clean point propagated with it."""

    __slots__ = ("box", "point")

    def __init__(self, box: Interval, point: Optional[torch.Tensor]):
        self.box, self.point = box, point

    @property
    def shared(self) -> bool:
        """The box is centred at the point (the same tensor): affine maps compute it once."""
        return self.point is not None and self.box.centre is self.point


class _Bounds:
    """How each kind of step (``ops.graph``) maps a box and its clean point."""

    def __init__(self, update_statistics: bool):
        self.update_statistics = update_statistics

    def module(self, step: graph.Step, v: _Value) -> _Value:
        m = step.module
        if batch_statistics(m):
            return self._batch_norm(m, v)
        if relu_fusable(m, v.box.centre, v.box.radius, v.point):
            centre, radius, point = relu_box(v.box.centre, v.box.radius, v.point)
            return _Value(Interval(centre, radius), point)
        rule = RULES[type(m)]
        box = rule(step.layer, v.box)
        if v.point is None:
            return _Value(box, None)
        return _Value(box, box.centre if v.shared and rule in CENTRE_IS_FORWARD else step.layer(v.point))

    def _batch_norm(self, m: nn.modules.batchnorm._BatchNorm, v: _Value) -> _Value:
        point = v.point
        if point is None:  # never: callers propagate a point when the model has such a layer
            raise UserError(f"interval bounds: {type(m).__name__} in train mode needs the clean batch")
        if fusable(m, point, v.box.centre, v.box.radius):
            out, centre, radius = batch_norm_box(m, point, v.box.centre, v.box.radius, self.update_statistics)
            return _Value(Interval(centre, radius), out)
        var, mean = batch_var_mean(point)
        shape = (1, -1) + (1,) * (point.dim() - 2)
        scale = torch.rsqrt(var + m.eps)
        if m.weight is not None:
            scale = scale * m.weight
        if self.update_statistics and m.training:
            out = m(point)  # the clean forward pass: the running statistics are updated here, once
        else:
            out = F.batch_norm(point, None, None, m.weight, m.bias, True, 0.0, m.eps)
        if v.shared:
            centre = out
        else:
            centre = (v.box.centre - mean.view(shape)) * scale.view(shape)
            if m.bias is not None:
                centre = centre + m.bias.view(shape)
        return _Value(Interval(centre, v.box.radius * scale.abs().view(shape)), out)

    def linear(self, fn: Callable, v: _Value) -> _Value:
        box = Interval(fn(v.box.centre), fn(v.box.radius))
        return _Value(box, None if v.point is None else box.centre if v.shared else fn(v.point))

    def add(self, a: _Value, b: _Value, alpha: float) -> _Value:
        box = Interval(torch.add(a.box.centre, b.box.centre, alpha=alpha),
                       torch.add(a.box.radius, b.box.radius, alpha=abs(alpha)))
        if a.point is None or b.point is None:
            return _Value(box, None)
        return _Value(box, box.centre if a.shared and b.shared else torch.add(a.point, b.point, alpha=alpha))

    def affine(self, v: _Value, mul, div, offset) -> _Value:
        def apply(t, magnitude=False):
            if mul is not None:
                t = t * (abs(mul) if magnitude else mul)
            if div is not None:
                t = t / (abs(div) if magnitude else div)
            if offset is not None and not magnitude:
                t = t + offset
            return t

        box = Interval(apply(v.box.centre), apply(v.box.radius, magnitude=True))
        return _Value(box, None if v.point is None else box.centre if v.shared else apply(v.point))

    def cat(self, values: list, dim: int) -> _Value:
        box = Interval(torch.cat([v.box.centre for v in values], dim), torch.cat([v.box.radius for v in values], dim))
        if any(v.point is None for v in values):
            return _Value(box, None)
        shared = all(v.shared for v in values)
        return _Value(box, box.centre if shared else torch.cat([v.point for v in values], dim))

    def representative(self, v: _Value) -> torch.Tensor:
        return v.box.centre


def _needs_point(prog: graph.Program) -> bool:
    return any(batch_statistics(step.module) for step in prog.modules)


def _propagate(model: nn.Module, prog: graph.Program, box: Interval, point: Optional[torch.Tensor] = None,
               update_statistics: bool = False, upto: Optional[graph.Step] = None) -> _Value:
    """Push ``box`` (and optionally the clean ``point``) through ``prog`` (up to the input of ``upto``);
    reuse the centre pass while the box is centred at the point."""
    return graph.run(prog, model, _Bounds(update_statistics), _Value(box, point), upto)


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except (TypeError, RuntimeError):  # older signature, or a device type without autocast
        return torch.is_autocast_enabled()


@contextmanager
def _full_precision(model: nn.Module, x: torch.Tensor):
    """Yield a cast for the input tensors: float16 / bfloat16 to float32, autocast disabled while inside."""
    low = x.dtype in _LOW_PRECISION
    if not (low or _autocast_enabled(x.device.type)):
        yield lambda t: t
        return
    if low:
        half = next((p for p in model.parameters() if p.dtype in _LOW_PRECISION), None)
        if half is not None:
            raise UserError(f"interval bounds are computed in float32, but the model's parameters are {half.dtype} "
                            "(convert the model with .float())")
    with torch.autocast(device_type=x.device.type, enabled=False):
        yield lambda t: t.float() if t.dtype in _LOW_PRECISION else t


def _check_box(lower: torch.Tensor, upper: torch.Tensor) -> None:
    if lower.shape != upper.shape:
        raise UserError(f"interval bounds: lower {tuple(lower.shape)} and upper {tuple(upper.shape)} differ in shape")
    if bool((lower > upper).any()):
        raise UserError("interval bounds: lower > upper somewhere in the input box")


def _clean_point(prog: graph.Program, box: Interval, clean_batch: Optional[torch.Tensor],
                 cast) -> Optional[torch.Tensor]:
    if not _needs_point(prog):
        return None
    if clean_batch is None:
        return box.centre
    if clean_batch.shape != box.centre.shape:
        raise UserError(f"interval bounds: clean_batch {tuple(clean_batch.shape)} and the box "
                        f"{tuple(box.centre.shape)} differ in shape")
    return cast(clean_batch)


def interval_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor,
                    clean_batch: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lower_logits, upper_logits)`` enclosing f(x') for every x' with lower <= x' <= upper. Batch norm in
    train mode normalises with the statistics of ``clean_batch`` (default: the box centre)."""
    _check_box(lower, upper)
    prog = _program(model)
    with _full_precision(model, lower) as cast:
        box = Interval.from_bounds(cast(lower), cast(upper))
        box = _propagate(model, prog, box, _clean_point(prog, box, clean_batch, cast)).box
        return box.lower, box.upper


def _margin(last: nn.Linear, box: Interval, y: torch.Tensor) -> torch.Tensor:
    z = last(box.centre)
    margin_centre = z.gather(1, y.view(-1, 1)) - z
    rows = F.one_hot(y, last.weight.shape[0]).to(last.weight.dtype) @ last.weight  # W_y per example (B, H)
    spec = rows.unsqueeze(1) - last.weight.unsqueeze(0)  # (B, K, H): rows W_y - W_k
    margin_radius = (spec.abs() * box.radius.unsqueeze(1)).sum(2)  # (faster than a bmm of tiny matrices)
    return margin_centre - margin_radius


def _split_last(model: nn.Module) -> tuple[graph.Program, graph.Step]:
    """The program and its last step, which must be an ``nn.Linear`` layer."""
    prog = _program(model)
    last = prog.last
    if last.kind != "module" or type(last.module) is not nn.Linear:
        what = type(last.module).__name__ if last.kind == "module" else last.label
        raise UserError(f"margin bounds need the model to end in nn.Linear; its last layer is {what}")
    return prog, last


def check_bounded(model: nn.Module, margin: bool = False) -> None:
    """Raise one :class:`UserError` naming every module or operation of ``model`` (in its current mode) that
    interval bounds cannot propagate through; with ``margin``, also when the model does not end in ``nn.Linear``."""
    if margin:
        _split_last(model)
    else:
        _program(model)


def _check_labels(y: torch.Tensor, n: int) -> None:
    if y.shape != (n,) or y.is_floating_point():
        raise UserError(f"margin bounds: y must be integer labels of shape ({n},), got {y.dtype} {tuple(y.shape)}")


def margin_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor,
                  clean_batch: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, K) lower bounds on z_y - z_k over the box (0 at k = y); the spec is folded into the last Linear.
    Batch norm in train mode normalises with the statistics of ``clean_batch`` (default: the box centre)."""
    _check_box(lower, upper)
    _check_labels(y, lower.shape[0])
    prog, last = _split_last(model)
    with _full_precision(model, lower) as cast:
        box = Interval.from_bounds(cast(lower), cast(upper))
        box = _propagate(model, prog, box, _clean_point(prog, box, clean_batch, cast), upto=last).box
        return _margin(last.module, box, y)


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
    ``check_mask=False`` skips the test that the mask is >= 0 (for masks already validated, e.g. a dataset's).
    Batch norm in train mode normalises the box with the statistics of the clean batch x; with ``clean=True``
    the clean pass is the model's forward pass and updates the running statistics once."""
    _check_labels(y, x.shape[0])
    prog, last = _split_last(model)
    with _full_precision(model, x) as cast:
        x = cast(x)
        if bounds is None:
            mask = _radius_mask(x, mask, eps, "masked_ibp", check_mask)
            box = Interval(x, mask if eps == 1 else eps * mask)
        else:
            box = Interval.from_bounds(*mask_box(x, mask, eps, bounds))
        out = _propagate(model, prog, box, x if clean or _needs_point(prog) else None, update_statistics=clean,
                         upto=last)
        margins = _margin(last.module, out.box, y)
        return (last.module(out.point), margins) if clean else margins
