"""Method registry: methods are found by name; a duplicate name is an error."""

from __future__ import annotations

from typing import Any

from ..registry import Registry

METHODS: Registry = Registry("method")


def register_method(cls):
    """Class decorator: register ``cls`` under ``cls.name``."""
    METHODS.register(cls.name, cls)
    return cls


def create_method(name: str, **params: Any):
    """Instantiate the method registered as ``name`` with hyperparameters ``params`` (validated)."""
    return METHODS.get(name)(**params)
