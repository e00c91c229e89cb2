"""Training methods behind one contract (see base.py); one method per module.

Every module in this package is imported here, so a method registers itself by existing.
"""

import importlib
import pkgutil

from .base import LossOutput, Method, StepContext
from .combined import Combined, combine
from .registry import METHODS, create_method, register_method

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS", "Combined", "LossOutput", "Method", "StepContext", "combine", "create_method", "register_method"]
