"""The dataset registry: names -> factories ``factory(seed=0, **options) -> DataSplits``, each with the
model, epochs and batch size a config that leaves them unset trains with; and :func:`load_dataset`,
which also reads the user's own ``folder:PATH`` and ``csv:PATH`` data."""

from __future__ import annotations

from ..errors import UserError
from ..registry import Registry
from .dataset import DataSplits

DATASETS: Registry = Registry("dataset")
#: the model trained when a config says ``model="auto"`` (the default) and the dataset names none
DEFAULT_MODEL = "mlp"
#: the number of epochs trained when a config leaves ``epochs`` unset and the dataset names none
DEFAULT_EPOCHS = 15
#: the training batch size when a config leaves ``batch_size`` unset and the dataset names none
DEFAULT_BATCH_SIZE = 256
_DEFAULT_MODELS: dict[str, str] = {}
_DEFAULT_EPOCHS: dict[str, int] = {}
_DEFAULT_BATCH_SIZES: dict[str, int] = {}


def register_dataset(name: str, default_model: str = DEFAULT_MODEL, default_epochs: int = DEFAULT_EPOCHS,
                     default_batch_size: int = DEFAULT_BATCH_SIZE):
    """Decorator: register ``factory(seed: int = 0, **options) -> DataSplits`` under ``name``, with the
    model that ``model="auto"`` trains on it and the epochs and batch size a config that leaves them
    unset trains with."""
    for field, value in (("default_epochs", default_epochs), ("default_batch_size", default_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"dataset {name!r}: {field} must be a positive integer, got {value!r}")
    add = DATASETS.register(name)

    def register(factory):
        add(factory)
        _DEFAULT_MODELS[name] = default_model
        _DEFAULT_EPOCHS[name] = default_epochs
        _DEFAULT_BATCH_SIZES[name] = default_batch_size
        return factory

    return register


def default_model(data: str) -> str:
    """The model ``model="auto"`` means for dataset ``data``: the one it registered, else ``mlp``
    (also for your own ``folder:``/``csv:`` data)."""
    return _DEFAULT_MODELS.get(data, DEFAULT_MODEL)


def default_epochs(data: str) -> int:
    """The epochs a config without ``epochs`` trains for on dataset ``data``: the number it registered,
    else 15 (also for your own ``folder:``/``csv:`` data)."""
    return _DEFAULT_EPOCHS.get(data, DEFAULT_EPOCHS)


def default_batch_size(data: str) -> int:
    """The training batch size a config without ``batch_size`` uses on dataset ``data``: the one it
    registered, else 256 (also for your own ``folder:``/``csv:`` data)."""
    return _DEFAULT_BATCH_SIZES.get(data, DEFAULT_BATCH_SIZE)


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
