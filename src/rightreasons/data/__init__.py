"""Datasets: sources (MNIST files), published shortcut benchmarks, and the user's own data.

Every dataset is built by a factory registered under a name and returns :class:`DataSplits` of
:class:`ExplanationDataset` objects whose examples are ``(x, y, mask, group, has_mask)`` with
mask = 1 on the features to ignore.
"""

from __future__ import annotations

from . import (  # noqa: F401  (built-in datasets register themselves)
                       color_mnist,
                       cub,
                       decoy_mnist,
                       fashion_mnist,
                       isic,
                       mask_budget,
                       plant,
                       salient_imagenet,
                       spurious,
                       text,
                       toy_colors,
                       waterbirds,
)
from .dataset import DataSplits, ExplanationDataset
from .mnist_source import fetch_mnist, load_mnist
from .registry import (
                       DATASETS,
                       DEFAULT_BATCH_SIZE,
                       DEFAULT_EPOCHS,
                       DEFAULT_MODEL,
                       default_batch_size,
                       default_epochs,
                       default_model,
                       load_dataset,
                       register_dataset,
                       register_path_dataset,
)

__all__ = ["DATASETS", "DEFAULT_BATCH_SIZE", "DEFAULT_EPOCHS", "DEFAULT_MODEL", "DataSplits", "ExplanationDataset",
           "default_batch_size", "default_epochs", "default_model", "fetch_mnist", "load_dataset", "load_mnist",
           "register_dataset", "register_path_dataset"]
