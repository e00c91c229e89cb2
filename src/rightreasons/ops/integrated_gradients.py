"""Integrated gradients (Sundararajan et al., ICML 2017), differentiable and chunked over path points.

    IG_i(x; b) = (x_i - b_i) * integral_0^1 d s(f(b + a (x - b))) / d x_i  da
               ~ (x_i - b_i) * sum_k w_k * d s(f(z_k)) / d z_k,i,     z_k = b + a_k (x - b)

s is the target score of each example (a class logit, or any per-example function of the logits, e.g.
the cross-entropy loss that Chen et al. 2019 attribute). Quadrature rules over ``steps`` intervals:
``right`` Riemann sum (a_k = k/steps, k = 1..steps; Sundararajan et al. and Chen et al.'s code; the
default), ``midpoint`` (a_k = (k - 1/2)/steps) and ``trapezoid`` (k = 0..steps, end weights halved;
steps + 1 points). Completeness: sum_i IG_i -> s(f(x)) - s(f(b)) as steps grows.

The path points are evaluated ``chunk_size`` at a time as one stacked batch of chunk_size * B inputs.
With ``create_graph=True`` (IG inside a training loss) and more than one chunk, each chunk is wrapped in
a recomputing autograd function: its forward keeps no graph and its backward rebuilds the chunk's
double-backward graph, so peak memory is that of one chunk whatever ``steps`` is (at the price of one
extra pass). Gradients flow to ``x``, ``baseline`` and the model parameters.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

from ..errors import UserError
from ..precision import input_grad

Target = Union[int, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]
RULES = ("right", "midpoint", "trapezoid")


def path_weights(steps: int, rule: str = "right", dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature points ``a_k`` in [0, 1] and weights ``w_k`` (summing to 1) for ``rule``."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"integrated_gradients: steps must be an int >= 1, got {steps!r}")
    if rule == "right":
        alphas = torch.arange(1, steps + 1, dtype=dtype) / steps
        weights = torch.full((steps,), 1.0 / steps, dtype=dtype)
    elif rule == "midpoint":
        alphas = (torch.arange(steps, dtype=dtype) + 0.5) / steps
        weights = torch.full((steps,), 1.0 / steps, dtype=dtype)
    elif rule == "trapezoid":
        alphas = torch.arange(steps + 1, dtype=dtype) / steps
        weights = torch.full((steps + 1,), 1.0 / steps, dtype=dtype)
        weights[0] = weights[-1] = 0.5 / steps
    else:
        raise UserError(f"integrated_gradients: rule {rule!r} is not one of {', '.join(RULES)}")
    return alphas, weights


def _scorer(target: Target, batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Turn ``target`` into a function of logits (B, K) returning per-example scores (B,)."""
    if callable(target) and not torch.is_tensor(target):
        return target
    if isinstance(target, bool):
        raise UserError("integrated_gradients: target must be an int, a (B,) tensor of class indices or a callable")
    if isinstance(target, int):
        return lambda logits: logits[:, target]
    if torch.is_tensor(target):
        if target.is_floating_point() or target.shape != (batch,):
            raise UserError(f"integrated_gradients: target tensor must hold {batch} class indices, got "
                            f"{target.dtype} of shape {tuple(target.shape)}")
        index = target.view(-1, 1)
        return lambda logits: logits.gather(1, index.to(logits.device)).squeeze(1)
    raise UserError(f"integrated_gradients: unsupported target {type(target).__name__}")


def _chunk_gradient(model, score, alphas, weights, x, baseline, create_graph):
    """sum_k w_k * grad s(f(z_k)) over the alphas of one chunk, shape of x."""
    c = alphas.numel()
    shape = (c,) + (1,) * x.dim()
    a = alphas.view(shape)
    z = (baseline + a * (x - baseline)).reshape(c * x.shape[0], *x.shape[1:])
    if not z.requires_grad:
        z.requires_grad_(True)
    logits = model(z)
    scores = torch.stack([score(part) for part in logits.view(c, x.shape[0], *logits.shape[1:])])
    if scores.shape != (c, x.shape[0]):
        raise UserError(f"integrated_gradients: target must give one score per example ({x.shape[0]},), "
                        f"got {tuple(scores.shape[1:])}")
    (grad,) = input_grad(scores.sum(), z, create_graph=create_graph)
    return (weights.view(shape) * grad.view(c, *x.shape)).sum(0)


class _RecomputedChunk(torch.autograd.Function):
    """One chunk's gradient sum, storing nothing but its inputs: backward recomputes the chunk with a
    graph, then takes the vector-Jacobian product (bounded memory for differentiable IG)."""

    @staticmethod
    def forward(ctx, model, score, alphas, weights, x, baseline, *params):
        ctx.model, ctx.score, ctx.params = model, score, params
        ctx.save_for_backward(alphas, weights, x, baseline)
        with torch.enable_grad():
            out = _chunk_gradient(model, score, alphas, weights, x.detach(), baseline.detach(), False)
        return out.detach()

    @staticmethod
    def backward(ctx, grad_out):
        alphas, weights, x, baseline = ctx.saved_tensors
        params = [p for p, needs in zip(ctx.params, ctx.needs_input_grad[6:]) if needs]
        with torch.enable_grad():
            xd = x.detach().requires_grad_(ctx.needs_input_grad[4])
            bd = baseline.detach().requires_grad_(ctx.needs_input_grad[5])
            out = _chunk_gradient(ctx.model, ctx.score, alphas, weights, xd, bd, True)
            wrt = [t for t, needs in ((xd, ctx.needs_input_grad[4]), (bd, ctx.needs_input_grad[5])) if needs]
            grads = list(torch.autograd.grad(out, wrt + params, grad_out, allow_unused=True)) if wrt + params else []
        gx = grads.pop(0) if ctx.needs_input_grad[4] else None
        gb = grads.pop(0) if ctx.needs_input_grad[5] else None
        gparams = iter(grads)
        return (None, None, None, None, gx, gb,
                *[next(gparams) if needs else None for needs in ctx.needs_input_grad[6:]])


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    baseline: Optional[Union[torch.Tensor, float]],
    target: Target,
    steps: int = 50,
    chunk_size: Optional[int] = None,
    create_graph: bool = False,
    rule: str = "right",
) -> torch.Tensor:
    """Integrated gradients of ``target`` from ``baseline`` to ``x``; same shape as ``x``.

    baseline:     tensor broadcastable to ``x``, a number, or None (zeros).
    target:       class index (int), class indices (B,), or ``fn(logits (B, K)) -> scores (B,)``.
    steps:        number of intervals of the quadrature ``rule`` ("right" | "midpoint" | "trapezoid").
    chunk_size:   path points evaluated per forward pass (None: all at once).
    create_graph: keep the result differentiable w.r.t. x, baseline and the model parameters.
    The model's mode is left as it is; examples must not interact (no train-mode batch norm).
    """
    if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < 1:
        raise UserError("integrated_gradients: x must be a floating-point tensor of shape (B, ...)")
    if baseline is None:
        baseline = torch.zeros_like(x)
    baseline = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        if torch.broadcast_shapes(baseline.shape, x.shape) != x.shape:
            raise RuntimeError
    except RuntimeError:
        raise UserError(f"integrated_gradients: baseline shape {tuple(baseline.shape)} does not broadcast "
                        f"to x shape {tuple(x.shape)}") from None
    baseline = baseline.expand_as(x)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise UserError(f"integrated_gradients: chunk_size must be None or an int >= 1, got {chunk_size!r}")
    alphas, weights = path_weights(steps, rule, dtype=x.dtype)
    alphas, weights = alphas.to(x.device), weights.to(x.device)
    score = _scorer(target, x.shape[0])
    n = alphas.numel()
    size = n if chunk_size is None else min(chunk_size, n)
    starts = range(0, n, size)
    if not create_graph:
        xd, bd = x.detach(), baseline.detach()
        with torch.enable_grad():
            total = sum(_chunk_gradient(model, score, alphas[s:s + size], weights[s:s + size], xd, bd, False)
                        for s in starts)
        return ((xd - bd) * total).detach()
    if len(starts) == 1:
        with torch.enable_grad():
            total = _chunk_gradient(model, score, alphas, weights, x, baseline, True)
            return (x - baseline) * total
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        total = sum(_RecomputedChunk.apply(model, score, alphas[s:s + size], weights[s:s + size], x, baseline, *params)
                    for s in starts)
        return (x - baseline) * total
