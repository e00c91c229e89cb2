"""The model registry: names -> factories ``factory(input_shape, num_classes, **options) -> nn.Module``,
and :func:`create_model`, which also builds a user's model given as ``package.module:factory``.

Whatever goes wrong in a user's factory is a one-line :class:`UserError` naming it: a module that cannot
be imported (missing, or raising while it is imported), a factory that is missing, takes other arguments,
raises, or returns something that is not an ``nn.Module``. (Outputs that are not logits of the right
shape are refused by ``fit`` before its first step, and by every metric.)"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from torch import nn

from ..errors import UserError
from ..registry import Registry

MODELS: Registry = Registry("model")
#: the form of a user's model
SPEC_FORM = "package.module:factory"


def register_model(name: str):
    """Decorator: register ``factory(input_shape, num_classes, **kwargs) -> nn.Module``."""
    return MODELS.register(name)


def _describe(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (the type name alone when there is no message)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _import_factory(spec: str) -> Callable[..., nn.Module]:
    module_name, _, attr = spec.partition(":")
    if not module_name.strip() or not attr.strip():
        raise UserError(f"model {spec!r}: expected {SPEC_FORM}, e.g. my_models:small_cnn")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing and not (module_name == missing or module_name.startswith(missing + ".")):
            # the module was found, but something it imports is missing
            raise UserError(f"model {spec!r}: importing module {module_name!r} raised {_describe(exc)}") from exc
        raise UserError(f"model {spec!r}: cannot import module {module_name!r} ({exc}); the module must be "
                        "importable: install its package, or put its folder on PYTHONPATH "
                        "(e.g. PYTHONPATH=. rightreasons train ...)") from None
    except (Exception, SystemExit) as exc:  # a SyntaxError, or any error raised by the module's own code
        raise UserError(f"model {spec!r}: importing module {module_name!r} raised {_describe(exc)}") from exc
    try:
        factory = getattr(module, attr, None)
    except Exception as exc:  # a module __getattr__ that raises something else than AttributeError
        raise UserError(f"model {spec!r}: looking up {attr!r} in module {module_name!r} raised "
                        f"{_describe(exc)}") from exc
    if not callable(factory):
        raise UserError(f"model {spec!r}: module {module_name!r} has no callable {attr!r}")
    return factory


def _check_arguments(name: str, factory: Callable, args: tuple, kwargs: dict) -> None:
    """Refuse, before calling it, a factory whose signature does not take ``args`` and ``kwargs``."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (some builtins): the call itself will tell
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise UserError(f"model {name!r}: bad arguments {kwargs} ({exc}); a factory is called as "
                        "factory(input_shape, num_classes, **options)") from None


def create_model(name: str, input_shape, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a registered model, or a user model given as ``"package.module:factory"`` (called with
    ``input_shape, num_classes, **kwargs`` and expected to return an ``nn.Module``)."""
    factory = _import_factory(name) if ":" in name else MODELS.get(name)
    args = (tuple(input_shape), int(num_classes))
    _check_arguments(name, factory, args, kwargs)
    try:
        model = factory(*args, **kwargs)
    except UserError:  # already one line naming what is at fault (e.g. a built-in model's input shape)
        raise
    except (Exception, SystemExit) as exc:
        raise UserError(f"model {name!r}: the factory raised {_describe(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise UserError(f"model {name!r}: factory returned {type(model).__name__}, not an nn.Module")
    if "_parameters" not in vars(model):
        raise UserError(f"model {name!r}: factory returned a {type(model).__name__} whose __init__ does not call "
                        "super().__init__(), so it is not a working nn.Module")
    return model
