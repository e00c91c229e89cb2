"""Datasets: sources (MNIST files), published shortcut benchmarks, and the user's own data.

Every dataset is built by a factory registered under a name and returns :class:`DataSplits` of
:class:`ExplanationDataset` objects whose examples are ``(x, y, mask, group, has_mask)`` with
mask = 1 on the features to ignore.
"""

from __future__ import annotations

from ..errors import UserError
from ..registry import Registry
from .dataset import DataSplits, ExplanationDataset

DATASETS: Registry = Registry("dataset")


def register_dataset(name: str):
    """Decorator: register ``factory(seed: int = 0, **options) -> DataSplits`` under ``name``."""
    return DATASETS.register(name)


def load_dataset(name: str, seed: int = 0, **options) -> DataSplits:
    """Build the dataset registered as ``name`` (deterministic for a given ``seed`` and options).
    ``folder:PATH`` and ``csv:PATH`` load your own image folder or table (data/folder.py, data/table.py)."""
    prefix, sep, path = name.partition(":")
    if sep and prefix in ("folder", "csv"):
        if not path:
            raise UserError(f"dataset {name!r}: give a path after '{prefix}:'")
        from .folder import load_folder
        from .table import load_table

        return (load_folder if prefix == "folder" else load_table)(path, seed=seed, **options)
    return DATASETS.get(name)(seed=seed, **options)


# Built-in datasets register themselves on import (after register_dataset exists).
from . import color_mnist, decoy_mnist, toy_colors  # noqa: E402,F401
from .mnist_source import fetch_mnist, load_mnist  # noqa: E402

__all__ = ["DATASETS", "DataSplits", "ExplanationDataset", "fetch_mnist", "load_dataset", "load_mnist",
           "register_dataset"]
