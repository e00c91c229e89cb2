"""The model registry: names -> factories, and :func:`create_model`, which builds a registered model, a
user's model given as ``package.module:factory``, or one of an optional package (``timm:NAME``,
``torchvision:NAME``), and applies the options every model takes.

**Factories.** ``factory(input_shape, num_classes, **options) -> nn.Module``: ``input_shape`` is one
example's shape without the batch dimension (``(C, H, W)`` for images, ``(features,)`` for tables),
``num_classes`` the number of classes; the module maps a batch ``(batch, *input_shape)`` to logits of
shape ``(batch, num_classes)``. ``options`` are the ``--model-option KEY=VALUE`` assignments (the model
options of the config). A user's ``package.module:factory`` must be importable (installed, or on
``PYTHONPATH``); a run whose config.json names one is rebuilt only with ``trust_code=True``, since building
it imports and runs that module.

**Optional packages.** ``timm:NAME`` calls ``timm.create_model(NAME, pretrained=False,
num_classes=num_classes, in_chans=C, **options)``; ``torchvision:NAME`` calls
``torchvision.models.get_model(NAME, weights=None, num_classes=num_classes, **options)`` (3-channel
images). Neither ever downloads anything; a package that is missing or fails to import is a one-line
error saying how to get it.

**Options of every model** (taken out of the options before the factory is called):

- ``weights=PATH``: load a local weights file, ``.safetensors`` or a torch file (read with
  ``torch.load(weights_only=True)``, which refuses anything that would unpickle code). A bare state dict,
  or a dict holding it under ``"state_dict"`` or ``"model"``; a ``module.`` prefix (DDP) is dropped.
  Tensors whose shape differs from the model's (an ImageNet head ``fc.*`` for another number of classes)
  keep the model's initial values and are reported with :func:`warnings.warn` (the command line prints it
  as ``warning: ...``); :func:`load_weights` returns their names. Other missing or unexpected keys are an
  error (missing ``num_batches_tracked`` counters of old files are not).
- ``freeze=none|all-but-head|all-but-last-stage``: ``requires_grad=False`` for every parameter except
  those of the head (a child module named ``fc``, ``head`` or ``classifier`` that holds the last
  ``nn.Linear``; else the last ``nn.Linear``), and for ``all-but-last-stage`` also those of the last stage:
  the last module before the head, among its siblings, that has parameters (``layer4`` of ``resnet18`` /
  ``resnet34``, ``layer3`` of ``resnet-small``). Frozen BatchNorm layers still update their running
  statistics in train mode; ``freeze_bn=true`` keeps them in eval mode (a forward pre-hook).

Whatever goes wrong is a one-line :class:`UserError` naming the model, option or file: a module that cannot
be imported (missing, or raising while it is imported), a factory that is missing, takes other arguments,
raises, or returns something that is not an ``nn.Module``. (Outputs that are not logits of the right
shape are refused by ``fit`` before its first step, and by every metric.)"""

from __future__ import annotations

import importlib
import inspect
import os
import warnings
from typing import Any, Callable

from torch import nn

from ..errors import UserError
from ..files import shown_path
from ..registry import Registry
from .freeze import FREEZE_MODES, freeze
from .weights import SHOWN_KEYS, load_weights

MODELS: Registry = Registry("model")
#: the form of a user's model
SPEC_FORM = "package.module:factory"
#: options that every model takes, with their defaults; create_model applies them, factories never see them
GENERIC_OPTIONS: dict[str, Any] = {"weights": None, "freeze": "none", "freeze_bn": False}
#: optional packages whose models are named ``PACKAGE:NAME``, and how to get them
PACKAGES = {
    "timm": "pip install timm (it needs torchvision: for a CPU-only torch, install torchvision from "
            "https://download.pytorch.org/whl/cpu first)",
    "torchvision": "install the torchvision build that matches your torch, e.g. pip install torchvision "
                   "--index-url https://download.pytorch.org/whl/cpu for a CPU-only torch",
}
#: options of the packages' factories that would download or read files behind our back
_REFUSED = {"timm": ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path"),
            "torchvision": ("pretrained", "weights_backbone")}


def register_model(name: str):
    """Decorator: register ``factory(input_shape, num_classes, **kwargs) -> nn.Module``."""
    return MODELS.register(name)


#: model specs ``PREFIX:REST`` of modules of this package: prefix -> (spec -> factory), see register_prefix_model
PREFIX_MODELS: dict[str, Callable[[str], Callable[..., nn.Module]]] = {}


def register_prefix_model(prefix: str, make_factory: Callable[[str], Callable[..., nn.Module]]) -> None:
    """Model specs ``PREFIX:REST`` are built by ``make_factory(spec)(input_shape, num_classes, **options)``."""
    if prefix in PREFIX_MODELS or prefix in PACKAGES:
        raise ValueError(f"model prefix {prefix!r} is already taken")
    PREFIX_MODELS[prefix] = make_factory


def imports_code(name: str) -> bool:
    """Whether building model ``name`` imports a module that the name chooses (``package.module:factory``),
    as opposed to a registered model or one of an optional package (``timm:NAME``, ``torchvision:NAME``)."""
    return ":" in str(name) and str(name).partition(":")[0] not in (*PACKAGES, *PREFIX_MODELS)


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


def _package_factory(spec: str) -> Callable[..., nn.Module]:
    """The factory of ``timm:NAME`` or ``torchvision:NAME``: never pretrained, never a download."""
    package, _, model_name = spec.partition(":")
    if not model_name.strip():
        raise UserError(f"model {spec!r}: expected {package}:NAME, e.g. {package}:resnet50")
    try:
        module = importlib.import_module("timm" if package == "timm" else "torchvision.models")
    except (Exception, SystemExit) as exc:  # missing, or failing at import (a torchvision built for another torch)
        raise UserError(f"model {spec!r} needs the optional package {package}, which cannot be imported "
                        f"({_describe(exc)}); {PACKAGES[package]}; or use a model of this package (e.g. "
                        "resnet18) with --model-option weights=PATH to load a local weights file") from None

    def factory(input_shape, num_classes, **options):
        refused = [k for k in _REFUSED[package] if k in options]
        if refused:
            raise UserError(f"model {spec!r}: option {refused[0]} is not available (models are never downloaded); "
                            "load a local file with --model-option weights=PATH")
        if len(input_shape) != 3:
            raise UserError(f"model {spec!r} needs image inputs (C, H, W), got input shape {tuple(input_shape)}")
        if package == "timm":
            return module.create_model(model_name, pretrained=False, num_classes=num_classes,
                                       in_chans=input_shape[0], **options)
        if input_shape[0] != 3:
            raise UserError(f"model {spec!r}: torchvision's models take 3-channel images, got input shape "
                            f"{tuple(input_shape)} (use data option channels=3, or timm:NAME, which takes in_chans)")
        return module.get_model(model_name, weights=None, num_classes=num_classes, **options)

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


def _generic_options(name: str, kwargs: dict) -> tuple[dict, dict]:
    """(the options every model takes, validated; the factory's own options)."""
    generic = {k: kwargs.get(k, default) for k, default in GENERIC_OPTIONS.items()}
    own = {k: v for k, v in kwargs.items() if k not in GENERIC_OPTIONS}
    weights = generic["weights"]
    if weights is not None and (not isinstance(weights, (str, os.PathLike)) or not str(weights).strip()):
        raise UserError(f"model {name!r}: option weights must be the path of a .safetensors or torch file, "
                        f"got {weights!r}")
    if generic["freeze"] not in FREEZE_MODES:
        raise UserError(f"model {name!r}: option freeze must be one of {', '.join(FREEZE_MODES)}, "
                        f"got {generic['freeze']!r}")
    if not isinstance(generic["freeze_bn"], bool):
        raise UserError(f"model {name!r}: option freeze_bn must be true or false, got {generic['freeze_bn']!r}")
    if generic["freeze_bn"] and generic["freeze"] == "none":
        raise UserError(f"model {name!r}: option freeze_bn=true keeps frozen BatchNorm layers in eval mode; "
                        "it needs freeze=all-but-head or freeze=all-but-last-stage")
    return generic, own


def create_model(name: str, input_shape, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a registered model, a user model given as ``"package.module:factory"`` (called with
    ``input_shape, num_classes, **kwargs`` and expected to return an ``nn.Module``), or ``timm:NAME`` /
    ``torchvision:NAME``; then load ``weights`` and apply ``freeze`` / ``freeze_bn`` (see the module's
    docstring). Weights skipped for their shape are reported with :func:`warnings.warn`."""
    generic, kwargs = _generic_options(name, kwargs)
    if name.partition(":")[0] in PREFIX_MODELS and ":" in name:  # e.g. hf:DIR (models/hf_text.py)
        factory = PREFIX_MODELS[name.partition(":")[0]](name)
    elif ":" in name:
        factory = _package_factory(name) if name.partition(":")[0] in PACKAGES else _import_factory(name)
    else:
        factory = MODELS.get(name)
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
    if generic["weights"] is not None:
        path = generic["weights"]
        own = model.state_dict()
        skipped = load_weights(model, path, name)
        if skipped:
            shapes = "; ".join(f"{k} (file {tuple(shape)}, model {tuple(own[k].shape)})"
                               for k, shape in list(skipped.items())[:SHOWN_KEYS])
            more = f" and {len(skipped) - SHOWN_KEYS} more" if len(skipped) > SHOWN_KEYS else ""
            warnings.warn(f"model {name!r}: weights file {shown_path(path)}: {len(skipped)} tensor(s) of another "
                          f"shape keep the model's initial values: {shapes}{more}", stacklevel=2)
    if generic["freeze"] != "none":
        freeze(model, generic["freeze"], name, freeze_bn=generic["freeze_bn"])
    return model
