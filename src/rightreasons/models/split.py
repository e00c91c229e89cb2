"""The split-model protocol of Tao & Shokri ("Machine Learning from Explanations"): a classifier
h = c o g o f made of a feature extractor f, a square mapping layer g and a classifier c.

A model follows the protocol when it has three callables

    model.features(x) -> h        (B, d) features of the input
    model.mapping(h)  -> h'       (B, d) the mapping layer, same width d as the features
    model.classify(h') -> logits  (B, classes)

and ``model(x) == model.classify(model.mapping(model.features(x)))``. :func:`split_model` returns them
(or raises a one-line :class:`UserError` saying how to get such a model).

Built-in split models (registered as ``split-mlp``, ``split-cnn`` and ``split-cnn-strided``) are
:class:`SplitSequential`: plain ``nn.Sequential`` stacks (so bound propagation and contextual
decomposition still work on them) with one extra square ``nn.Linear`` -- the mapping -- inserted after
a hidden layer: for ``split-mlp`` after the first one (``mapping_after=0``; why:
docs/results/method-tuning.md#split-mlp), for ``split-mlp-ross`` and the split CNNs before the last
classification layer, at the width of the penultimate features (the poster's f is the backbone, c the
fully connected head). The mapping starts as the identity (weight I, bias 0), so at initialisation g
changes nothing and the network computes c(f(x)). It is an ordinary layer of the model, saved in
``model.safetensors`` and rebuilt by ``load_run`` from the model name. ``mapping_after`` (an index into
the hidden layers, -1 = the last) moves the cut of ``split-mlp``. Your own model: :func:`insert_mapping`
on an ``nn.Sequential``, or any module with the three methods above.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from ..errors import UserError
from .builtin import cnn, cnn_strided, mlp_stack, widths
from .registry import register_model


class SplitSequential(nn.Sequential):
    """An ``nn.Sequential`` whose layer ``cut`` is the mapping g: features = layers[:cut],
    mapping = layers[cut], classify = layers[cut + 1:]. Forward is nn.Sequential's."""

    def __init__(self, *layers: nn.Module, cut: int):
        super().__init__(*layers)
        if not 0 < cut < len(self) - 1 or not isinstance(self[cut], nn.Linear):
            raise UserError(f"SplitSequential: cut={cut} must index an inner nn.Linear layer of {len(self)} layers")
        if self[cut].in_features != self[cut].out_features:
            raise UserError(f"SplitSequential: the mapping layer must be square, got {self[cut]}")
        self.cut = cut

    def __getitem__(self, idx):
        if isinstance(idx, slice):  # a slice is a plain stack (it need not contain the mapping)
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in list(self)[: self.cut]:
            x = layer(x)
        return x

    def mapping(self, h: torch.Tensor) -> torch.Tensor:
        return self[self.cut](h)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        for layer in list(self)[self.cut + 1:]:
            h = layer(h)
        return h


def identity_linear(width: int) -> nn.Linear:
    """A square linear layer initialised to the identity map."""
    layer = nn.Linear(width, width)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(width))
        layer.bias.zero_()
    return layer


def insert_mapping(model: nn.Sequential, index: int) -> SplitSequential:
    """``model``'s layers with an identity-initialised mapping inserted before ``layers[index]``,
    whose input width (an ``nn.Linear``'s in_features) gives the mapping's width."""
    layers = list(model)
    if not 0 < index < len(layers) or not isinstance(layers[index], nn.Linear):
        raise UserError(f"insert_mapping: layer {index} of the model must be an nn.Linear after the first layer")
    width = layers[index].in_features
    return SplitSequential(*layers[:index], identity_linear(width), *layers[index:], cut=index)


@register_model("split-mlp")
def split_mlp(input_shape, num_classes, hidden: tuple[int, ...] = (100, 100),
              mapping_after: int = 0) -> SplitSequential:
    """The default MLP (flatten -> 100 -> 100 -> classes) with a square identity-initialised mapping layer
    after hidden layer ``mapping_after`` (default 0: the first, so f is one Linear+ReLU; -1: the last,
    before the classification layer). Why the early cut: docs/results/method-tuning.md#split-mlp"""
    hidden = widths("split-mlp", "hidden", list(hidden) if isinstance(hidden, tuple) else hidden)
    if not hidden:
        raise UserError("model 'split-mlp': needs at least one hidden layer (option hidden)")
    k = mapping_after % len(hidden) if -len(hidden) <= mapping_after < len(hidden) else None
    if k is None:
        raise UserError(f"model 'split-mlp': mapping_after={mapping_after} must index one of "
                        f"{len(hidden)} hidden layers")
    return insert_mapping(mlp_stack(input_shape, num_classes, hidden), 1 + 2 * (k + 1))


@register_model("split-mlp-ross")
def split_mlp_ross(input_shape, num_classes, hidden: tuple[int, ...] = (50, 30),
                   mapping_after: int = -1) -> SplitSequential:
    """Ross's MLP (``mlp-ross``: flatten -> 50 -> 30 -> classes) with the mapping layer, as ``split-mlp``
    (but after the last hidden layer by default, ``mapping_after=-1``)."""
    return split_mlp(input_shape, num_classes, hidden, mapping_after)


@register_model("split-cnn")
def split_cnn(input_shape, num_classes, channels: tuple[int, int] = (16, 32), hidden: int = 128) -> SplitSequential:
    """The built-in ``cnn`` with a square identity-initialised mapping layer on its ``hidden``-unit
    penultimate features (before the classification layer)."""
    base = cnn(input_shape, num_classes, channels=channels, hidden=hidden)
    return insert_mapping(base, len(base) - 1)


@register_model("split-cnn-strided")
def split_cnn_strided(input_shape, num_classes, channels: tuple[int, int] = (16, 32),
                      hidden: int = 256) -> SplitSequential:
    """``cnn-strided`` with the mapping layer on its penultimate features, as ``split-cnn``."""
    base = cnn_strided(input_shape, num_classes, channels=channels, hidden=hidden)
    return insert_mapping(base, len(base) - 1)


def split_model(model: nn.Module) -> tuple[Callable, Callable, Callable]:
    """``(features, mapping, classify)`` of a model that follows the split protocol (module docstring)."""
    parts = [getattr(model, name, None) for name in ("features", "mapping", "classify")]
    if not all(callable(p) for p in parts):
        raise UserError(f"{type(model).__name__} is not a split model (features(x), mapping(h), classify(h)); "
                        "use --model split-mlp or split-cnn, or see rightreasons.models.split")
    return parts[0], parts[1], parts[2]


def mapping_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the mapping layer g (empty when the mapping is not a module)."""
    mapping = model[model.cut] if isinstance(model, SplitSequential) else getattr(model, "mapping", None)
    return list(mapping.parameters()) if isinstance(mapping, nn.Module) else []


#: the split version of each built-in model, for methods that need a split model
SPLIT_VERSIONS = {"mlp": "split-mlp", "mlp-ross": "split-mlp-ross", "cnn": "split-cnn",
                  "cnn-strided": "split-cnn-strided"}


def split_version(model: str) -> str:
    """The split model built like ``model`` (``mlp`` -> ``split-mlp``, ...); other names unchanged."""
    return SPLIT_VERSIONS.get(model, model)
