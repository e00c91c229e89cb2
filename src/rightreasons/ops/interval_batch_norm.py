"""A box through batch norm in train mode, in one fused pass with a hand-derived backward (interval bounds).

Per channel, the clean point p gives the batch statistics mu, r = 1 / sqrt(var + eps) (biased variance),
xhat = (p - mu) r, and with k = gamma r the layer maps

    out = gamma xhat + beta,    centre' = k (c - mu) + beta,    radius' = |k| radius

(the clean batch's statistics as a fixed affine map for the box, as certified training does; gradients
still flow through mu and r). With upstream gradients g_o, g_c, g_r of the three outputs and N values
per channel:

    d centre = k g_c,    d radius = |k| g_r,    d beta = sum(g_o) + sum(g_c)
    d gamma  = sum(g_o xhat) + r sum(g_c (c - mu)) + sign(gamma) r sum(g_r radius)
    d p      = gamma r P(g_o) - k sum(g_c) / N - (gamma sum(g_c (c - mu)) + |gamma| sum(g_r radius)) r^2 xhat / N

where gamma r P(g_o) is the layer's own backward (ATen's kernel, which also gives sum(g_o xhat) and
sum(g_o)), dmu/dp = 1/N and dr/dp_j = -r^2 xhat_j / N. ``ops.interval_bounds`` uses it for
``torch.nn.BatchNorm2d`` layers (and subclasses) without hooks; the forward updates the running
statistics exactly as the layer's own forward pass would, when asked.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable


def fusable(m: nn.Module, point: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor) -> bool:
    """Whether :func:`batch_norm_box` applies: a 2-D batch norm without hooks, float32/float64 tensors of one
    shape (the box may be centred at the point itself)."""
    return (isinstance(m, nn.BatchNorm2d) and not m._forward_pre_hooks and not m._forward_hooks
            and point.dim() == 4 and point.dtype in (torch.float32, torch.float64)
            and centre.shape == point.shape == radius.shape and centre.dtype == point.dtype == radius.dtype)


def batch_norm_box(m: nn.BatchNorm2d, point: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor,
                   update_statistics: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out, centre', radius')`` of the formulas above. ``update_statistics``: also move ``m``'s running
    statistics (and ``num_batches_tracked``) as ``m(point)`` would."""
    running_mean = running_var = None
    momentum = 0.0
    if update_statistics and m.training and m.track_running_stats and m.running_mean is not None:
        m.num_batches_tracked.add_(1)
        momentum = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
        running_mean, running_var = m.running_mean, m.running_var
    shared = centre is point
    out, c, rad = _BatchNormBox.apply(point, None if shared else centre, radius, m.weight, m.bias,
                                      running_mean, running_var, momentum, m.eps)
    return out, out if shared else c, rad


class _BatchNormBox(torch.autograd.Function):
    """Every full-size pass is one of ATen's batch-norm kernels: the train-mode kernel for the point, and the
    eval-mode kernel, given the batch's mean and variance, for the per-channel affine maps of the box and
    their gradients (its grad_weight is r sum(g (input - mean)), its grad_bias sum(g))."""

    @staticmethod
    def forward(ctx, p, c, rad, weight, bias, running_mean, running_var, momentum: float, eps: float):
        out, mean, invstd = torch.native_batch_norm(p, weight, bias, running_mean, running_var, True, momentum,
                                                    eps)
        var = invstd.pow(-2) - eps  # the batch's biased variance, for the eval-mode kernel
        c_out = None
        if c is not None:
            c_out = torch.native_batch_norm(c, weight, bias, mean, var, False, 0.0, eps)[0]
        magnitude = torch.ones_like(invstd) if weight is None else weight.abs()
        rad_out = torch.native_batch_norm(rad, magnitude, None, torch.zeros_like(mean), var, False, 0.0, eps)[0]
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(p, c, rad, weight, mean, invstd, var, magnitude)
        ctx.eps = eps
        return out, c_out, rad_out

    @staticmethod
    @once_differentiable
    def backward(ctx, g_o, g_c, g_r):
        p, c, rad, weight, mean, invstd, var, magnitude = ctx.saved_tensors
        need, eps = ctx.needs_input_grad, ctx.eps
        n, r = p.numel() // p.shape[1], invstd
        gamma = torch.ones_like(r) if weight is None else weight
        kernel = torch.ops.aten.native_batch_norm_backward
        zero = torch.zeros_like(r)
        d_p = d_c = d_rad = None
        s_go_x = s_go = s_gc_c = s_gc = s_gr_r = zero  # s_gc_c = r sum(g_c (c - mu)), s_gr_r = r sum(g_r rad)
        if g_o is not None:
            d_p, s_go_x, s_go = kernel(g_o, p, weight, None, None, mean, invstd, True, eps, [need[0], True, True])
        if g_c is not None and c is not None:
            d_c, s_gc_c, s_gc = kernel(g_c, c, weight, mean, var, None, None, False, eps, [need[1], True, True])
        if g_r is not None:
            d_rad, s_gr_r, _ = kernel(g_r, rad, magnitude, zero, var, None, None, False, eps,
                                      [need[2], True, False])
        if need[0]:
            d_r = gamma * s_gc_c / r + gamma.abs() * s_gr_r / r  # dL/dr through centre' and radius'
            # - k sum(g_c) / N - dL/dr r^2 xhat / N, as the eval-mode kernel's affine map of p
            extra = torch.native_batch_norm(p, -d_r * r * r / n, -gamma * r * s_gc / n, mean, var, False, 0.0,
                                            eps)[0]
            d_p = extra if d_p is None else d_p.add_(extra)
        d_w = d_b = None
        if weight is not None and need[3]:
            d_w = s_go_x + s_gc_c + torch.sign(gamma) * s_gr_r
        if need[4]:
            d_b = s_go + s_gc
        return d_p, d_c, d_rad, d_w, d_b, None, None, None, None
