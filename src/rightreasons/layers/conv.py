"""2-D convolution with a direct double backward, for the methods that penalise input gradients.

``Conv2d`` is ``torch.nn.Conv2d`` (same parameters, state-dict keys, forward and first-order gradients: the
same ATen kernels) except that its backward pass is differentiated by ATen's own convolution kernels (a
forward convolution and a weight gradient) instead of autograd's generic convolution double backward, which
builds its terms from transposed copies. The first-order backward computes only what the running backward
pass uses (``engine_needs``): an input gradient, as RRR takes it, computes no weight gradient.

With y = conv(x, W) + b and the first-order gradients gx = conv^T(gy, W), gW = wgrad(gy, x), gb = sum(gy)
(wgrad: the weight gradient of a convolution with input x and output gradient gy), each bilinear, the
gradients of L = <v, gx> + <V, gW> + <c, gb> (v, V, c: the upstream gradients of gx, gW, gb) are

    dL/dgy = conv(v, W) + conv(x, V) + c,    dL/dW = wgrad(gy, v),    dL/dx = conv^T(gy, V)

The double backward is not differentiable again. ``padding='same'``, other padding modes, autocast and
low-precision inputs take ``torch.nn.Conv2d``'s own path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def engine_needs(ctx, i: int) -> bool:
    """Whether the running backward pass uses the gradient of the Function's input ``i``: the engine prunes
    what built-in layers compute by the pass's ``inputs``, and ``ctx.needs_input_grad`` does not say."""
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[i][0]
    try:
        return node is None or bool(torch._C._will_engine_execute_node(node))
    except (AttributeError, RuntimeError):  # a leaf inside autograd.grad, or an older torch: compute it
        return True


def _geometry(ctx) -> tuple:
    return ctx.stride, ctx.padding, ctx.dilation, ctx.groups


def _backward_kernel(gy, x, weight, bias_sizes, geometry: tuple, mask) -> tuple:
    """ATen's convolution backward: (gx, gW, gb), each when asked."""
    stride, padding, dilation, groups = geometry
    return torch.ops.aten.convolution_backward(gy, x, weight, bias_sizes, list(stride), list(padding),
                                               list(dilation), False, [0, 0], groups, list(mask))


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.stride, ctx.padding, ctx.dilation, ctx.groups = stride, padding, dilation, groups
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        mask = (engine_needs(ctx, 0), engine_needs(ctx, 1), ctx.has_bias and engine_needs(ctx, 2))
        gx, gw, gb = _Conv2dBackward.apply(gy, x, weight, ctx.has_bias, _geometry(ctx), mask)
        return gx, gw, gb, None, None, None, None


class _Conv2dBackward(torch.autograd.Function):
    """(gx, gW, gb) of a convolution, by ATen's kernel; its backward is the formula above."""

    @staticmethod
    def forward(ctx, gy, x, weight, has_bias: bool, geometry: tuple, mask: tuple):
        ctx.geometry = geometry
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(gy, x, weight)
        bias_sizes = [weight.shape[0]] if has_bias else None
        return _backward_kernel(gy, x, weight, bias_sizes, geometry, mask)

    @staticmethod
    @once_differentiable
    def backward(ctx, v, big_v, c):
        gy, x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = geometry = ctx.geometry
        need_gy, need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        d_gy = d_x = d_w = None
        if need_gy:
            terms = []
            if v is not None:
                terms.append(F.conv2d(v, weight, None, stride, padding, dilation, groups))
            if big_v is not None:
                terms.append(F.conv2d(x, big_v, None, stride, padding, dilation, groups))
            d_gy = terms[0] if terms else torch.zeros_like(gy)
            for t in terms[1:]:
                d_gy += t
            if c is not None:
                d_gy += c.reshape(1, -1, 1, 1)
        if need_w and v is not None:
            d_w = _backward_kernel(gy, v, weight, None, geometry, (False, True, False))[1]
        if need_x and big_v is not None:
            d_x = _backward_kernel(gy, x, big_v, None, geometry, (True, False, False))[0]
        return d_gy, d_x, d_w, None, None, None


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d`` whose backward has the direct double backward of this module."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
        direct = (self.padding_mode == "zeros" and not isinstance(self.padding, str) and x.dim() == 4
                  and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype
                  and not torch.is_autocast_enabled(x.device.type) and torch.is_grad_enabled()
                  and (x.requires_grad or weight.requires_grad))
        if not direct:
            return super()._conv_forward(x, weight, bias)
        # a view, so the engine can say whether this backward pass wants the weight's gradient (an input
        # gradient does not); a parameter is a leaf, which autograd.grad cannot be asked about
        return _Conv2d.apply(x, weight.view_as(weight), bias, tuple(self.stride), tuple(self.padding),
                             tuple(self.dilation), self.groups)
