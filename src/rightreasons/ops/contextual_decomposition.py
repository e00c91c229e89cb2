"""Contextual decomposition (CD) of a network's logits into the part due to a masked input region and
the rest (Murdoch et al. 2018; Singh et al. 2019, "hierarchical interpretations"; used by CDEP,
Rieger et al. ICML 2020).

The input is split into ``relevant = x * mask`` (the masked region whose contribution we measure) and
``irrelevant = x * (1 - mask)``; both parts are pushed through the network layer by layer with one rule
per layer type, and every rule keeps ``relevant + irrelevant`` equal to the layer's output, so at the end
``relevant + irrelevant == model(x)`` (eval-mode function; checked by tests in float64).

Rules (r, i = relevant and irrelevant parts of a layer's input):

* affine layers ``y = A x + b`` (Linear, Conv1d/2d/3d, BatchNorm): ``r' = A r + b * |A r| /
  (|A r| + |A i|)``, ``i' = A i + b * |A i| / (|A r| + |A i|)``: the bias is split in proportion to the
  two contributions, elementwise, as CDEP's and ACD's ``propagate_conv_linear`` do. Where both
  contributions are exactly 0 (CDEP's code divides by 1e-19 there and silently drops the bias, breaking
  completeness) the whole bias goes to the irrelevant part. ``bias_rule="irrelevant"`` assigns every
  bias to the irrelevant part (Murdoch et al.'s simplest variant). Under both rules a zero mask gives a
  relevant part that is exactly 0 at every layer (A 0 = 0, and a bias share proportional to 0 is 0).
* elementwise activations f (ReLU, LeakyReLU, ReLU6, ELU, Tanh, Sigmoid, Softplus), three orderings
  of the two parts (``activation_rule``):
  ``"cd"`` (default; CDEP's and ACD's ``propagate_relu``, relevant part first): ``r' = f(r) - f(0)``,
  ``i' = f(r + i) - r'``, so for ReLU ``r' = relu(r)``, ``i' = relu(r + i) - relu(r)`` and every
  interaction goes to the irrelevant part; ``"shapley"``: the two-player Shapley split
  ``r' = (f(r) - f(0) + f(r + i) - f(i)) / 2``; ``"marginal"`` (context first): ``r' = f(r + i) - f(i)``,
  ``i' = f(i)``, so every interaction is charged to the masked region. With ``bias_rule="irrelevant"``
  and no max pooling, ``"marginal"`` makes the irrelevant part exactly ``model(x * (1 - mask))``.
* max pooling: positions are chosen by pooling ``r + i`` and both parts are gathered there (CDEP/ACD).
* linear maps without bias (AvgPool, AdaptiveAvgPool, Flatten, Unflatten) apply to both parts;
  Identity and Dropout are the identity (CD decomposes the eval-mode function).
* batch norm uses its running statistics (CD decomposes the eval-mode function); a batch norm in train
  mode or without running statistics normalises with the batch statistics (per-channel mean and biased
  variance) of the full input ``r + i``, used as one fixed affine map for both parts.
* ``nn.Sequential`` (nested too, or a subclass that does not override ``forward``) is decomposed
  child by child; any other model is traced with ``torch.fx`` (``ops.graph``): a residual sum ``a + b``
  adds relevant parts and irrelevant parts (``a - b`` subtracts them), multiplying or dividing by a
  constant scales both, adding a constant splits it like a bias, ``torch.cat`` concatenates both,
  reshapes, means and average pooling apply to both, functional activations and max pooling use the rules
  of their layers, and sizes (``x.size(0)``) are read from ``r + i``.

Anything else (an LSTM, an unknown function, a model fx cannot trace) is reported: every unsupported
module or operation is listed in ONE :class:`UserError`; nothing is skipped. Users add rules with
:func:`register_cd_rule` (those layer types are never traced into). The decomposition is differentiable
(CDEP trains through it).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..layers import BatchNorm2d, Conv2d
from ..tokens import TokenMean, embeddings, token_flags
from . import graph
from .interval_bounds import batch_var_mean
from .modes import eval_mode

Rule = Callable[[nn.Module, torch.Tensor, torch.Tensor, dict], tuple[torch.Tensor, torch.Tensor]]

BIAS_RULES = ("proportional", "irrelevant")
ACTIVATION_RULES = ("cd", "shapley", "marginal")


def _split_bias(r: torch.Tensor, i: torch.Tensor, bias: torch.Tensor | None, opts: dict):
    """Add ``bias`` (broadcastable to r) to the two parts according to ``opts['bias_rule']``."""
    if bias is None:
        return r, i
    if opts["bias_rule"] == "irrelevant":
        return r, i + bias
    ar, ai = r.abs(), i.abs()
    total = ar + ai
    empty = total == 0
    share = ar / torch.where(empty, torch.ones_like(total), total)  # safe division: no NaN gradients
    share_r = bias * share
    return r + share_r, i + (bias - share_r)


def _linear(m: nn.Linear, r, i, opts):
    return _split_bias(F.linear(r, m.weight), F.linear(i, m.weight), m.bias, opts)


def _conv(m, r, i, opts):
    bias = None if m.bias is None else m.bias.view(1, -1, *([1] * (r.dim() - 2)))
    # _conv_forward handles padding modes ("zeros", "reflect", ...) exactly as the layer does
    return _split_bias(m._conv_forward(r, m.weight, None), m._conv_forward(i, m.weight, None), bias, opts)


def _batchnorm(m: nn.modules.batchnorm._BatchNorm, r, i, opts):
    shape = (1, -1) + (1,) * (r.dim() - 2)
    if m.training or m.running_mean is None or m.running_var is None:  # batch statistics of the full input
        var, mean = batch_var_mean(r + i)
    else:
        mean, var = m.running_mean, m.running_var
    scale = torch.rsqrt(var + m.eps)
    if m.weight is not None:
        scale = scale * m.weight
    shift = -mean * scale
    if m.bias is not None:
        shift = shift + m.bias
    scale, shift = scale.view(shape), shift.view(shape)
    return _split_bias(r * scale, i * scale, shift, opts)


_ACTIVATIONS: dict[type, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    # functional forms: never in place, even for modules built with inplace=True
    nn.ReLU: lambda m, t: F.relu(t),
    nn.LeakyReLU: lambda m, t: F.leaky_relu(t, m.negative_slope),
    nn.ReLU6: lambda m, t: F.hardtanh(t, 0.0, 6.0),
    nn.ELU: lambda m, t: F.elu(t, m.alpha),
    nn.Tanh: lambda m, t: torch.tanh(t),
    nn.Sigmoid: lambda m, t: torch.sigmoid(t),
    nn.Softplus: lambda m, t: F.softplus(t, m.beta, m.threshold),
}


def _activation(m: nn.Module, r, i, opts):
    f = _ACTIVATIONS[type(m)]
    f0 = f(m, torch.zeros((), dtype=r.dtype, device=r.device))
    total = f(m, r + i)
    if opts["activation_rule"] == "shapley":
        rel = 0.5 * (f(m, r) - f0 + total - f(m, i))
    elif opts["activation_rule"] == "marginal":
        rel = total - f(m, i)
    else:
        rel = f(m, r) - f0
    return rel, total - rel


_MAXPOOLS = {nn.MaxPool1d: (F.max_pool1d, 1), nn.MaxPool2d: (F.max_pool2d, 2), nn.MaxPool3d: (F.max_pool3d, 3)}


def _maxpool(m, r, i, opts):
    pool, dims = _MAXPOOLS[type(m)]
    if r.dim() != dims + 2:
        raise UserError(f"contextual decomposition: {type(m).__name__} needs batched input with {dims + 2} "
                        f"dims (N, C, ...), got shape {tuple(r.shape)}")
    pooled, idx = pool(r + i, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode,
                       return_indices=True)
    # indices address the flattened spatial positions of each (sample, channel)
    flat = idx.flatten(2)
    return r.flatten(2).gather(2, flat).view_as(pooled), i.flatten(2).gather(2, flat).view_as(pooled)


def _both(m, r, i, opts):
    return m(r), m(i)


def _identity(m, r, i, opts):
    return r, i


def _token_mean(m, r, i, opts):
    """The tokens' mean is linear without offset once the flags (read from the whole input) are fixed."""
    flags = token_flags(r + i)
    return m.pool(embeddings(r), flags), m.pool(embeddings(i), flags)


_RULES: dict[type, Rule] = {
    nn.Linear: _linear,
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv, Conv2d: _conv,
    nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm, nn.BatchNorm3d: _batchnorm, BatchNorm2d: _batchnorm,
    nn.ReLU: _activation, nn.LeakyReLU: _activation, nn.ReLU6: _activation, nn.ELU: _activation,
    nn.Tanh: _activation, nn.Sigmoid: _activation, nn.Softplus: _activation,
    nn.MaxPool1d: _maxpool, nn.MaxPool2d: _maxpool, nn.MaxPool3d: _maxpool,
    nn.AvgPool1d: _both, nn.AvgPool2d: _both, nn.AvgPool3d: _both,
    nn.AdaptiveAvgPool1d: _both, nn.AdaptiveAvgPool2d: _both, nn.AdaptiveAvgPool3d: _both,
    nn.Flatten: _both, nn.Unflatten: _both,
    TokenMean: _token_mean,
    nn.Identity: _identity, nn.Dropout: _identity, nn.Dropout1d: _identity, nn.Dropout2d: _identity,
    nn.Dropout3d: _identity, nn.AlphaDropout: _identity,
}


def register_cd_rule(layer_type: type, rule: Rule) -> None:
    """Register ``rule(module, relevant, irrelevant, opts) -> (relevant', irrelevant')`` for modules of
    exactly ``layer_type`` (subclasses are not matched: they may override ``forward``). The rule must
    keep ``relevant' + irrelevant' == module(relevant + irrelevant)``."""
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise UserError(f"register_cd_rule: layer_type must be an nn.Module subclass, got {layer_type!r}")
    if layer_type in _RULES:
        raise UserError(f"register_cd_rule: a rule for {layer_type.__name__} is already registered")
    _RULES[layer_type] = rule


_WHAT = "contextual decomposition"


def _program(model: nn.Module) -> graph.Program:
    with eval_mode(model):  # CD decomposes the eval-mode function: trace that one
        return graph.program(model, frozenset(_RULES), _WHAT)


def _problems(prog: graph.Program) -> list[str]:
    bad = []
    for step in prog.steps:
        if step.kind == "module" and type(step.module) not in _RULES:
            bad.append(f"{step.label} ({type(step.module).__name__})")
        elif step.kind == "unsupported":
            bad.append(f"{step.label}: {step.reason}")
    return bad


def unsupported_modules(model: nn.Module) -> list[str]:
    """Names (with types) of every module, and every operation of a traced model, that the rule table
    cannot decompose, in model order; raises a one-line :class:`UserError` if torch.fx cannot trace it."""
    return _problems(_program(model))


def check_decomposable(model: nn.Module) -> None:
    """Raise one :class:`UserError` listing every module or operation the rule table cannot decompose."""
    _checked(model)


def _checked(model: nn.Module) -> graph.Program:
    prog = _program(model)
    bad = _problems(prog)
    if bad:
        raise UserError("contextual decomposition has no rule for: " + ", ".join(bad)
                        + " (use supported layers and operations, or register_cd_rule)")
    return prog


class _Parts:
    """How each kind of step (``ops.graph``) maps the pair (relevant, irrelevant)."""

    def __init__(self, opts: dict):
        self.opts = opts

    def module(self, step: graph.Step, v):
        return _RULES[type(step.module)](step.module, v[0], v[1], self.opts)

    def linear(self, fn, v):
        return fn(v[0]), fn(v[1])

    def add(self, a, b, alpha):
        return torch.add(a[0], b[0], alpha=alpha), torch.add(a[1], b[1], alpha=alpha)

    def affine(self, v, mul, div, offset):
        r, i = v
        if mul is not None:
            r, i = r * mul, i * mul
        if div is not None:
            r, i = r / div, i / div
        return (r, i) if offset is None else _split_bias(r, i, offset, self.opts)

    def cat(self, values, dim):
        return torch.cat([r for r, _ in values], dim), torch.cat([i for _, i in values], dim)

    def representative(self, v):
        return v[0] + v[1]


def contextual_decomposition(
    model: nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor,
    bias_rule: str = "proportional",
    activation_rule: str = "cd",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(relevant, irrelevant)`` logits with ``relevant + irrelevant == model(x)`` (eval mode).

    ``relevant`` is the contribution of the masked region ``x * mask`` (mask = 1 marks it; broadcastable
    to ``x``), ``irrelevant`` that of ``x * (1 - mask)``. The model runs in eval mode (dropout off,
    batch norm on running statistics; without running statistics on the batch's, see the module docstring)
    and its modes are restored afterwards. Differentiable.
    """
    if bias_rule not in BIAS_RULES:
        raise UserError(f"bias_rule {bias_rule!r} is not one of {', '.join(BIAS_RULES)}")
    if activation_rule not in ACTIVATION_RULES:
        raise UserError(f"activation_rule {activation_rule!r} is not one of {', '.join(ACTIVATION_RULES)}")
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise UserError("contextual_decomposition: x must be a floating-point tensor")
    mask = torch.as_tensor(mask, device=x.device).to(x.dtype)
    try:
        torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError:
        raise UserError(f"contextual_decomposition: mask shape {tuple(mask.shape)} does not broadcast "
                        f"to x shape {tuple(x.shape)}") from None
    if torch.broadcast_shapes(mask.shape, x.shape) != x.shape:
        raise UserError(f"contextual_decomposition: mask shape {tuple(mask.shape)} would enlarge x shape "
                        f"{tuple(x.shape)}")
    prog = _checked(model)
    opts = {"bias_rule": bias_rule, "activation_rule": activation_rule}
    with eval_mode(model):
        return graph.run(prog, model, _Parts(opts), (x * mask, x * (1 - mask)))
