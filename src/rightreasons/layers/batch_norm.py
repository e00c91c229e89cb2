"""Batch normalisation with a fused, exact double backward, for the methods that penalise input gradients.

``BatchNorm2d`` is ``torch.nn.BatchNorm2d`` (same parameters, buffers, state-dict keys, running-statistics
update and first-order gradients: the same ATen kernels) except that, in train mode, the backward pass is
itself differentiated by a hand-derived formula instead of autograd's generic one. Methods that penalise
input gradients (RRR, certainty, IG-NORM) differentiate the backward pass once more; through a BatchNorm
layer in train mode that second derivative depends on the batch statistics, and PyTorch's generic double
backward spends about two dozen full-size elementwise passes per layer on it.

Per channel, with N values, mean mu, r = 1 / sqrt(var + eps) (biased variance) and xhat = (x - mu) r:

    forward   y = gamma xhat + beta
    backward  gx = gamma r P(gy),  ggamma = sum(gy xhat),  gbeta = sum(gy),
              P(g) = g - mean(g) - xhat mean(g xhat)          (P is self-adjoint)

Differentiating L = sum(v gx) + a ggamma + b gbeta (v, a, b: the upstream gradients of gx, ggamma,
gbeta), with dxhat_i / dx_j = r (delta_ij - 1/N - xhat_i xhat_j / N) and dr / dx_j = -r^2 xhat_j / N:

    dL/dgy    = gamma r P(v) + a xhat + b
    dL/dgamma = r (sum(v gy) - sum(v) mean(gy) - sum(v xhat) mean(gy xhat))
    dL/dx     = r P(G) - s r^2 xhat / N,   G = -gamma r (mean(gy xhat) v + sum(v xhat) gy / N) + a gy,
                                           s = gamma (sum(v gy) - sum(v) mean(gy) - sum(v xhat) mean(gy xhat))

Computed as: gamma r P(v), sum(v xhat), sum(v) by ATen's batch-norm backward kernel applied to v (and r P(gy)
by the same kernel when a is given); gx = gamma r P(gy), sum(gy xhat), sum(gy) kept from the first backward;
then dL/dgy = gamma r P(v) (+ a xhat + b) and

    dL/dx = -(r mean(gy xhat)) gamma r P(v) - (r sum(v xhat) / N) gx + a r P(gy) - s r^3 (x - mu) / N,

a few per-channel multiply-adds. The double backward is not differentiable again (no method needs third
derivatives). Eval mode, autocast and low-precision inputs take ``torch.nn.BatchNorm2d``'s own path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable


def _per_channel(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (C,) tensor shaped to broadcast over ``like`` (N, C, ...)."""
    return t.reshape((1, -1) + (1,) * (like.dim() - 2))


def _channel_sum(t: torch.Tensor) -> torch.Tensor:
    return t.sum(dim=[d for d in range(t.dim()) if d != 1])


class _TrainBatchNorm(torch.autograd.Function):
    """y = batch_norm(x) with the batch's statistics (updating the running ones), as ``F.batch_norm``."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float):
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd = ctx.saved_tensors
        need = ctx.needs_input_grad
        gx, gw, gb = _TrainBatchNormBackward.apply(gy, x, weight, mean, invstd, ctx.eps,
                                                   (need[0], need[1], need[2]))
        return gx, gw, gb, None, None, None, None


class _TrainBatchNormBackward(torch.autograd.Function):
    """(gx, ggamma, gbeta) of the train-mode batch norm, by ATen's kernel; its backward is the formula above."""

    @staticmethod
    def forward(ctx, gy, x, weight, mean, invstd, eps: float, mask: tuple):
        gx, gw, gb = _kernel(gy, x, weight, mean, invstd, eps, mask)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(gy, x, weight, mean, invstd, gx, gw, gb)
        ctx.eps = eps
        return gx, gw, gb

    @staticmethod
    @once_differentiable
    def backward(ctx, v, a, b):
        gy, x, weight, mean, invstd, gx, s_gx, s_g = ctx.saved_tensors
        eps, n, r = ctx.eps, x.numel() // x.shape[1], invstd
        gamma = weight if weight is not None else torch.ones_like(r)
        rp_gy = None  # r P(gy), needed only with an upstream gradient of ggamma, or when the forward skipped gx
        if a is not None or gx is None or s_gx is None or s_g is None:
            rp_gy, s_gx, s_g = _kernel(gy, x, None, mean, invstd, eps, (True, True, True))
            gx = _per_channel(gamma, x) * rp_gy
        zero = torch.zeros_like(r)
        if v is not None:  # gamma r P(v), sum(v xhat), sum(v): the same kernel applied to v
            gp_v, s_vx, s_v = _kernel(v, x, weight, mean, invstd, eps, (True, True, True))
            s_vg = _channel_sum(v * gy)
        else:
            gp_v, s_vx, s_v, s_vg = None, zero, zero, zero
        need_gy, need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        centred = x - _per_channel(mean, x) if need_x or (need_gy and a is not None) else None
        inner = s_vg - s_v * s_g / n - s_vx * s_gx / n  # sum(v P(gy))
        d_gy = d_x = d_w = None
        if need_w and weight is not None:
            d_w = r * inner
        if need_x:  # r P(G) - s r^2 xhat / N, written with gamma r P(v), gx = gamma r P(gy) and r P(gy)
            d_x = gx * _per_channel(-r * s_vx / n, x)
            if gp_v is not None:
                d_x += gp_v * _per_channel(-r * s_gx / n, x)
            if a is not None:
                d_x += rp_gy * _per_channel(a, x)
            d_x += centred * _per_channel(-gamma * inner * r ** 3 / n, x)
        if need_gy:  # gamma r P(v) + a xhat + b (gp_v is ours: updated in place, after its use above)
            d_gy = gp_v if gp_v is not None else torch.zeros_like(gy)
            if a is not None:
                d_gy += centred * _per_channel(a * r, x)
            if b is not None:
                d_gy += _per_channel(b, x)
        return d_gy, d_x, d_w, None, None, None, None


def _kernel(g, x, weight, mean, invstd, eps: float, mask) -> tuple:
    """ATen's train-mode batch-norm backward of ``g``: (gamma r P(g), sum(g xhat), sum(g)), each when asked."""
    return torch.ops.aten.native_batch_norm_backward(g, x, weight, None, None, mean, invstd, True, eps, list(mask))


class BatchNorm2d(nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` whose train-mode backward has the fused double backward of this module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = (self.training and self.track_running_stats and self.running_mean is not None
                 and x.dtype in (torch.float32, torch.float64) and x.dim() == 4
                 and not torch.is_autocast_enabled(x.device.type) and torch.is_grad_enabled())
        if not fused:
            return super().forward(x)
        self._check_input_dim(x)
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return _TrainBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var, momentum,
                                     self.eps)
