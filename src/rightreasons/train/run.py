"""A run end to end: config -> data, model, method -> fit -> metrics -> a run directory.

A run directory holds ``model.safetensors`` (weights), ``config.json`` (the fully resolved
:class:`TrainConfig`, reusable with ``rightreasons train --config``), ``metrics.json``, and
``checkpoints/`` (the latest per-epoch checkpoint, for ``--resume``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..data import DataSplits, load_dataset
from ..errors import UserError
from ..files import atomic_write, atomic_write_json, read_json
from ..methods import create_method
from ..metrics.evaluate import evaluate
from ..metrics.robust import robust_metrics
from ..models import create_model
from .config import TrainConfig
from .trainer import fit

RUN_FILES = ("model.safetensors", "config.json", "metrics.json")
CHECKPOINTS = "checkpoints"


@dataclass
class RunOutput:
    model: nn.Module
    config: TrainConfig
    metrics: dict
    data: DataSplits


def build_model(config: TrainConfig, input_shape, num_classes: int) -> nn.Module:
    """The model the config names, initialised from ``config.seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return create_model(config.model_name(), input_shape, num_classes, **config.model_options)


def resolved_config(config: TrainConfig) -> TrainConfig:
    """The config with the method's hyperparameters filled in with their defaults (validated) and the
    model, the number of epochs and the batch size named ("auto" / None -> the dataset's defaults)."""
    method = create_method(config.method, **config.params)
    return config.replace(model=config.model_name(), epochs=config.epoch_count(), batch_size=config.batch_size_used(),
                          params=dict(method.params))


def check_out_dir(out: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Refuse to write into a directory that already holds a run (or its checkpoints), unless
    ``overwrite`` (start again) or ``resume`` (continue it)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    existing = [name for name in (*RUN_FILES, CHECKPOINTS) if (out / name).exists()]
    if existing and overwrite and (out / CHECKPOINTS).is_dir():
        shutil.rmtree(out / CHECKPOINTS)
    if existing and not (overwrite or resume):
        raise UserError(f"{out}: already holds a run ({', '.join(existing)}); choose another --out, "
                        "or pass --resume or --overwrite")
    return out


def run_training(
    config: TrainConfig,
    log: Optional[Callable[[str], None]] = None,
    progress: bool = False,
    data: Optional[DataSplits] = None,
    checkpoint_dir: Optional[str | Path] = None,
    resume: bool = False,
) -> RunOutput:
    """Train as ``config`` says and evaluate on the validation and test splits (on test also masked PGD
    and IBP-certified accuracy over the whole data range, see ``metrics.robust``; checkpointing into
    ``checkpoint_dir`` after every epoch and, with ``resume``, continuing from its latest checkpoint)."""
    config = resolved_config(config)
    method = create_method(config.method, **config.params)
    if data is None:
        data = load_dataset(config.data, seed=config.seed, **config.data_options)
    model = build_model(config, data.input_shape, data.num_classes)
    result = fit(model, method, data, config, log=log, progress=progress, checkpoint_dir=checkpoint_dir, resume=resume)
    metrics = {
        "test": {**evaluate(model, data.test), **robust_metrics(model, data.test)},
        "val": evaluate(model, data.val),
        "train_seconds": result.train_seconds,
        "selected_epoch": result.selected_epoch,
        "history": result.history,
    }
    return RunOutput(model, config, metrics, data)


def save_run(out: str | Path, output: RunOutput) -> Path:
    """Write the run's three files atomically into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in output.model.state_dict().items()}
    atomic_write(out / "model.safetensors", lambda tmp: save_file(state, tmp))
    atomic_write_json(out / "config.json", output.config.to_dict())
    atomic_write_json(out / "metrics.json", output.metrics)
    return out


def load_run(run_dir: str | Path, data: Optional[DataSplits] = None) -> tuple[nn.Module, TrainConfig, DataSplits]:
    """Rebuild a saved model (weights loaded safely from safetensors) and its config and data."""
    run_dir = Path(run_dir)
    config = TrainConfig.load(_run_file(run_dir, "config.json"))
    _run_file(run_dir, "model.safetensors")
    if data is None:
        data = load_dataset(config.data, seed=config.seed, **config.data_options)
    model = build_model(config, data.input_shape, data.num_classes)
    try:
        state = load_file(str(run_dir / "model.safetensors"))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{run_dir / 'model.safetensors'}: cannot read weights ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{run_dir / 'model.safetensors'}: weights do not fit model {config.model!r} "
                        f"({first})") from None
    return model, config, data


def load_run_on(run_dir: str | Path, dataset: Optional[str] = None, data_options: Optional[dict] = None
                ) -> tuple[nn.Module, TrainConfig, DataSplits]:
    """:func:`load_run`, with the model evaluated on ``dataset`` (default: the run's own) built with the
    run's seed. The run's data options carry over when the dataset is the run's own; ``data_options``
    are merged over them."""
    if dataset is None and not data_options:
        return load_run(run_dir)
    config = TrainConfig.load(_run_file(run_dir, "config.json"))
    options = {**(config.data_options if dataset in (None, config.data) else {}), **(data_options or {})}
    return load_run(run_dir, data=load_dataset(dataset or config.data, seed=config.seed, **options))


def _run_file(run_dir: str | Path, name: str) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    if not (run_dir / name).is_file():
        raise UserError(f"{run_dir}: missing {name} (not a run directory written by `rightreasons train`?)")
    return run_dir / name


def read_metrics(run_dir: str | Path) -> dict:
    return read_json(Path(run_dir) / "metrics.json", "metrics")
