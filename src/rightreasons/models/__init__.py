"""Models: the registry (names -> factories), the built-in models, the residual networks, and the split
models of the feature-alignment method. ``create_model(name, input_shape, num_classes, **options)`` builds
one (also ``package.module:factory``, ``timm:NAME``, ``torchvision:NAME``; options ``weights``, ``freeze``)."""

from . import builtin, hf_text, resnet, split, text  # noqa: F401  (the built-in models register themselves)
from .freeze import freeze
from .registry import MODELS, create_model, register_model
from .split import SplitSequential, insert_mapping, mapping_parameters, split_model, split_version
from .weights import load_weights

__all__ = ["MODELS", "SplitSequential", "create_model", "freeze", "insert_mapping", "load_weights",
           "mapping_parameters", "register_model", "split_model", "split_version"]
