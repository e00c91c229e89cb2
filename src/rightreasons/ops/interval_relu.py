"""A box and its clean point through ReLU, in one fused pass with a hand-derived backward (interval bounds).

ReLU is monotone, so the box (c, r) maps to the ReLU of its end points. By positive homogeneity
relu(t) / 2 = relu(t / 2), so with h_u = (c + r) / 2 and h_l = (c - r) / 2:

    centre' = relu(h_u) + relu(h_l),    radius' = relu(h_u) - relu(h_l),    point' = relu(p)

and with upstream gradients g_c, g_r, g_o and A = (g_c + g_r) [h_u > 0], B = (g_c - g_r) [h_l > 0]:

    d c = (A + B) / 2,    d r = (A - B) / 2,    d p = g_o [p > 0]

(the derivative of ReLU at 0 is 0, as in ``torch.relu``). With r = 0 the outputs are relu(c) and 0
exactly. ``ops.interval_bounds`` uses it for ``torch.nn.ReLU`` layers without hooks.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.autograd.function import once_differentiable


def fusable(m: nn.Module, centre: torch.Tensor, radius: torch.Tensor, point: Optional[torch.Tensor]) -> bool:
    """Whether :func:`relu_box` applies: exactly ``nn.ReLU`` without hooks, tensors of one shape and dtype."""
    tensors = [centre, radius] + ([] if point is None else [point])
    return (type(m) is nn.ReLU and not m._forward_pre_hooks and not m._forward_hooks
            and all(t.shape == centre.shape and t.dtype == centre.dtype for t in tensors)
            and centre.dtype in (torch.float32, torch.float64))


def relu_box(centre: torch.Tensor, radius: torch.Tensor,
             point: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """``(centre', radius', point')`` of the formulas above (``point'`` is None without a point)."""
    if point is None:
        c, r = _ReluBox.apply(centre, radius)
        return c, r, None
    c, r, p = _ReluBoxPoint.apply(centre, radius, point)
    return c, r, p


def _forward(ctx, centre, radius):
    half = torch.lerp(centre, radius, 0.5)  # (c + r) / 2
    half_lower = (half - radius).clamp_(min=0)  # relu((c - r) / 2)
    half_upper = half.clamp_(min=0)  # relu((c + r) / 2)
    ctx.set_materialize_grads(False)
    return half_upper, half_lower, half_upper + half_lower, half_upper - half_lower


def _backward(half_upper, half_lower, g_c, g_r):
    if g_c is None and g_r is None:
        return None, None
    if g_c is None:
        g_c = torch.zeros_like(g_r)
    if g_r is None:
        g_r = torch.zeros_like(g_c)
    a = torch.ops.aten.threshold_backward(g_c + g_r, half_upper, 0)
    b = torch.ops.aten.threshold_backward(g_c - g_r, half_lower, 0)
    d_c = torch.lerp(a, b, 0.5)  # (A + B) / 2
    return d_c, d_c - b  # (A - B) / 2


class _ReluBox(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centre, radius):
        half_upper, half_lower, c, r = _forward(ctx, centre, radius)
        ctx.save_for_backward(half_upper, half_lower)
        return c, r

    @staticmethod
    @once_differentiable
    def backward(ctx, g_c, g_r):
        return _backward(*ctx.saved_tensors, g_c, g_r)


class _ReluBoxPoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centre, radius, point):
        half_upper, half_lower, c, r = _forward(ctx, centre, radius)
        p = point.clamp(min=0)
        ctx.save_for_backward(half_upper, half_lower, p)
        return c, r, p

    @staticmethod
    @once_differentiable
    def backward(ctx, g_c, g_r, g_o):
        half_upper, half_lower, p = ctx.saved_tensors
        d_c, d_r = _backward(half_upper, half_lower, g_c, g_r)
        d_p = None if g_o is None else torch.ops.aten.threshold_backward(g_o, p, 0)
        return d_c, d_r, d_p
