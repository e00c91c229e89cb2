"""The model registry: names -> factories ``factory(input_shape, num_classes, **options) -> nn.Module``,
and :func:`create_model`, which also builds a user's model given as ``package.module:factory``."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from ..errors import UserError
from ..registry import Registry

MODELS: Registry = Registry("model")


def register_model(name: str):
    """Decorator: register ``factory(input_shape, num_classes, **kwargs) -> nn.Module``."""
    return MODELS.register(name)


def _import_factory(spec: str) -> Callable[..., nn.Module]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"model {spec!r}: cannot import module {module_name!r} ({exc}); the module must be "
                        "importable: install its package, or put its folder on PYTHONPATH "
                        "(e.g. PYTHONPATH=. rightreasons train ...)") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"model {spec!r}: module {module_name!r} has no callable {attr!r}")
    return factory


def create_model(name: str, input_shape, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a registered model, or a user model given as ``"package.module:factory"`` (called with
    ``input_shape, num_classes, **kwargs`` and expected to return an ``nn.Module``)."""
    factory = _import_factory(name) if ":" in name else MODELS.get(name)
    try:
        model = factory(tuple(input_shape), int(num_classes), **kwargs)
    except TypeError as exc:
        raise UserError(f"model {name!r}: bad arguments {kwargs} ({exc})") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model {name!r}: factory returned {type(model).__name__}, not an nn.Module")
    return model
