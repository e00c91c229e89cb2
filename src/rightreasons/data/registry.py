"""The dataset registry: names -> factories ``factory(seed=0, **options) -> DataSplits``, each with the
model, epochs and batch size a config that leaves them unset trains with; and :func:`load_dataset`,
which also reads the user's own ``folder:PATH`` and ``csv:PATH`` data."""

from __future__ import annotations

import re

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
#: ``PREFIX:PATH`` datasets (the files of a published dataset a user downloaded): prefix -> loader
PATH_DATASETS: dict[str, object] = {}
#: the prefixes of the user's own data, read by data/folder.py and data/table.py
OWN_DATA = ("folder", "csv")


def _check_defaults(name: str, default_epochs: int, default_batch_size: int) -> None:
    for field, value in (("default_epochs", default_epochs), ("default_batch_size", default_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"dataset {name!r}: {field} must be a positive integer, got {value!r}")


def register_dataset(name: str, default_model: str = DEFAULT_MODEL, default_epochs: int = DEFAULT_EPOCHS,
                     default_batch_size: int = DEFAULT_BATCH_SIZE):
    """Decorator: register ``factory(seed: int = 0, **options) -> DataSplits`` under ``name``, with the
    model that ``model="auto"`` trains on it and the epochs and batch size a config that leaves them
    unset trains with."""
    _check_defaults(name, default_epochs, default_batch_size)
    add = DATASETS.register(name)

    def register(factory):
        add(factory)
        _DEFAULT_MODELS[name] = default_model
        _DEFAULT_EPOCHS[name] = default_epochs
        _DEFAULT_BATCH_SIZES[name] = default_batch_size
        return factory

    return register


def register_path_dataset(prefix: str, default_model: str = DEFAULT_MODEL, default_epochs: int = DEFAULT_EPOCHS,
                          default_batch_size: int = DEFAULT_BATCH_SIZE):
    """Decorator: register ``loader(path: str, seed: int = 0, **options) -> DataSplits`` for dataset specs
    ``PREFIX:PATH`` (e.g. ``isic:/data/isic``), with the model, epochs and batch size a config that leaves
    them unset trains with on any PATH."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", prefix) or prefix in OWN_DATA:
        raise ValueError(f"dataset prefix {prefix!r}: must be a lower-case name and not one of {OWN_DATA}")
    _check_defaults(prefix, default_epochs, default_batch_size)

    def add(loader):
        if prefix in PATH_DATASETS:
            raise ValueError(f"dataset prefix {prefix!r} is already registered")
        PATH_DATASETS[prefix] = loader
        _DEFAULT_MODELS[prefix + ":"] = default_model
        _DEFAULT_EPOCHS[prefix + ":"] = default_epochs
        _DEFAULT_BATCH_SIZES[prefix + ":"] = default_batch_size
        return loader

    return add


def _key(data: str) -> str:
    """The registry key of a dataset spec: the name, or ``PREFIX:`` for ``PREFIX:PATH``."""
    prefix, sep, _ = data.partition(":")
    return prefix + ":" if sep and prefix in PATH_DATASETS else data


def default_model(data: str) -> str:
    """The model ``model="auto"`` means for dataset ``data``: the one it registered, else ``mlp``
    (also for your own ``folder:``/``csv:`` data)."""
    return _DEFAULT_MODELS.get(_key(data), DEFAULT_MODEL)


def default_epochs(data: str) -> int:
    """The epochs a config without ``epochs`` trains for on dataset ``data``: the number it registered,
    else 15 (also for your own ``folder:``/``csv:`` data)."""
    return _DEFAULT_EPOCHS.get(_key(data), DEFAULT_EPOCHS)


def default_batch_size(data: str) -> int:
    """The training batch size a config without ``batch_size`` uses on dataset ``data``: the one it
    registered, else 256 (also for your own ``folder:``/``csv:`` data)."""
    return _DEFAULT_BATCH_SIZES.get(_key(data), DEFAULT_BATCH_SIZE)


def load_dataset(name: str, seed: int = 0, **options) -> DataSplits:
    """Build the dataset registered as ``name`` (deterministic for a given ``seed`` and options).
    ``folder:PATH`` and ``csv:PATH`` load your own image folder or table (data/folder.py, data/table.py);
    ``PREFIX:PATH`` a published dataset's downloaded files with the loader registered for PREFIX. The
    options ``spurious=SHAPE`` and ``spurious_*`` (any dataset) stamp a label-correlated patch on the
    training images after loading, with the same seed (data/spurious.py); then ``annotated_fraction``,
    ``annotated_count`` and ``mask_corruption`` (any dataset) cut and corrupt the training annotations, with
    the same seed (data/mask_budget.py). ``tokenizer=hf:PATH`` (text datasets) tokenizes with a Hugging
    Face tokenizer file instead of the built-in tokenizer (data/text/tokenizer.py)."""
    from .mask_budget import apply_mask_budget, mask_budget_options
    from .spurious import inject_spurious, spurious_options
    from .text.tokenizer import using_tokenizer

    options, budget = mask_budget_options(f"dataset {name!r}", options)
    options, spurious = spurious_options(f"dataset {name!r}", options)
    tokenizer = options.pop("tokenizer", None)
    with using_tokenizer(tokenizer):
        splits = _load(name, seed, options)
    if tokenizer is not None and not getattr(splits.train, "is_text", False):
        raise UserError(f"dataset {name!r}: option tokenizer applies to text datasets only")
    splits = splits if spurious is None else inject_spurious(splits, seed=seed, **spurious)
    return splits if budget is None else apply_mask_budget(splits, seed=seed, **budget)


def _load(name: str, seed: int, options: dict) -> DataSplits:
    prefix, sep, path = name.partition(":")
    if sep and prefix in PATH_DATASETS:
        if not path:
            raise UserError(f"dataset {name!r}: give the path of the downloaded files after '{prefix}:'")
        return PATH_DATASETS[prefix](path, seed=seed, **options)
    if sep and prefix in OWN_DATA:
        if not path:
            raise UserError(f"dataset {name!r}: give a path after '{prefix}:'")
        from .folder import load_folder
        from .table import load_table

        return (load_folder if prefix == "folder" else load_table)(path, seed=seed, **options)
    return DATASETS.get(name)(seed=seed, **options)
