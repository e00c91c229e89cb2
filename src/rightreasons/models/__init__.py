"""Models: the registry (names -> factories), the built-in models, and the split models of the
feature-alignment method. ``create_model(name, input_shape, num_classes, **options)`` builds one."""

from . import builtin, split  # noqa: F401  (the built-in models register themselves)
from .registry import MODELS, create_model, register_model
from .split import SplitSequential, insert_mapping, mapping_parameters, split_model, split_version

__all__ = ["MODELS", "SplitSequential", "create_model", "insert_mapping", "mapping_parameters", "register_model",
           "split_model", "split_version"]
