"""An Optuna study that maximises validation worst-group accuracy (never the test split).

Every trial trains the base config with the searched values filled in, with the base config's seed
(so trials differ only in their hyperparameters), on a dataset loaded once per process and with its
test split withheld. The first trial is the base config itself (the method's defaults unless
``--param`` says otherwise), so the study always holds the baseline. Several processes or machines
share a study by opening the same storage and study name.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..data import DataSplits, load_dataset
from ..errors import UserError
from ..methods import create_method
from ..train.config import TrainConfig
from ..train.run import build_model, data_model_options, resolved_config
from ..train.trainer import NonFiniteLossError, fit
from .space import Dimension, apply, check_space

OBJECTIVE = "val_worst_group_accuracy"
_DATA: dict = {}  # (name, seed, options) -> DataSplits without test, shared by the trials of a process


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("sweeps need optuna: pip install 'rightreasons[sweep]'") from None
    return optuna


def _load(name: str, seed: int, options: dict) -> DataSplits:
    key = (name, seed, json.dumps(options, sort_keys=True, default=str))
    if key not in _DATA:
        full = load_dataset(name, seed=seed, **options)
        withheld = full.train.subset(torch.arange(0))  # the sweep has no test split to look at
        withheld.name = f"{full.train.name.split('/')[0]}/test (withheld from sweeps)"
        _DATA[key] = DataSplits(full.train, full.val, withheld, {**full.info, "test": "withheld"})
    return _DATA[key]


def sweep_data(base: TrainConfig) -> tuple[TrainConfig, DataSplits, str]:
    """The base config with the validation protocol forced to a de-correlated split where the dataset
    offers ``val=decorrelated``, the data (cached), and a line saying which protocol is used."""
    options = {**base.data_options, "val": "decorrelated"}
    try:
        data = _load(base.data, base.seed, options)
    except UserError as first:
        data = _load(base.data, base.seed, base.data_options)  # raises if the problem was not `val`
        return base, data, (f"validation: {base.data}'s own val split (no de-correlated option: {first}); "
                            "a val split with the shortcut intact can reward the shortcut")
    note = "validation: de-correlated split (val=decorrelated: the shortcut is randomised, as in test)"
    if base.data_options.get("val", "decorrelated") != "decorrelated":
        note += f"; overrides val={base.data_options['val']}"
    return base.replace(data_options=options), data, note


class Objective:
    """Train one trial's config and return its validation worst-group accuracy."""

    def __init__(self, base: TrainConfig, space: list[Dimension], data: DataSplits):
        self.base, self.space, self.data = base, space, data

    def __call__(self, trial) -> float:
        values = {dim.key: dim.suggest(trial) for dim in self.space}
        config = resolved_config(apply(self.base, values))
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        start = time.perf_counter()
        model = build_model(config, self.data.input_shape, self.data.num_classes,
                            data_model_options(self.data, config.model_name()))
        method = create_method(config.method, **config.params)
        try:
            result = fit(model, method, self.data, config)  # trains on train, measures val; never test
        except NonFiniteLossError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        record = result.history[result.selected_epoch - 1]
        trial.set_user_attr("val_accuracy", record["val_accuracy"])
        trial.set_user_attr(OBJECTIVE, record[OBJECTIVE])
        trial.set_user_attr("selected_epoch", result.selected_epoch)
        trial.set_user_attr("train_seconds", result.train_seconds)
        trial.set_user_attr("seconds", time.perf_counter() - start)
        return record[OBJECTIVE]


def _storage(optuna, url: str):
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    for attempt in range(5):  # processes creating the same new database can race on its tables
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except ImportError as exc:
            raise UserError(f"--storage {url}: needs a database driver ({exc})") from None
        except Exception as exc:  # noqa: BLE001  (sqlalchemy errors: bad URL, unreachable server)
            racing = any(text in str(exc) for text in ("already exists", "locked", "UNIQUE constraint"))
            if attempt == 4 or not racing:
                raise UserError(f"--storage {url}: cannot open ({str(exc).splitlines()[0]})") from None
            time.sleep(0.2 * (attempt + 1))


def fingerprint(base: TrainConfig, space: list[Dimension]) -> dict:
    """What every process joining a study must agree on."""
    config = {k: v for k, v in base.to_dict().items() if k != "threads"}
    return {"objective": OBJECTIVE, "config": config, "space": {d.key: d.to_dict() for d in space}}


def open_study(url: str, name: str, expected: dict, sampler_seed: Optional[int] = None, storage=None):
    """Create the study, or join it if it exists (refusing one made for another config or space)."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = storage if storage is not None else _storage(optuna, url)
    sampler = optuna.samplers.TPESampler(seed=sampler_seed)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(f"study {name!r} in {url} minimises; a sweep needs one that maximises {OBJECTIVE}")
    stored = study.user_attrs.get("rightreasons")
    if stored is None:
        study.set_user_attr("rightreasons", expected)
    elif stored != json.loads(json.dumps(expected)):
        differ = sorted({*(f"config.{k}" for k in set(stored["config"]) | set(expected["config"])
                           if stored["config"].get(k) != expected["config"].get(k)),
                         *(["space"] if stored.get("space") != expected["space"] else [])})
        raise UserError(f"study {name!r} in {url} was started with a different {', '.join(differ) or 'setup'}; "
                        "use the same settings or another --study")
    return study


@dataclass
class SweepResult:
    study: object
    note: str
    base: TrainConfig


def run_sweep(base: TrainConfig, space: list[Dimension], trials: int, storage: str, study_name: str,
              sampler_seed: Optional[int] = None, log: Optional[Callable[[str], None]] = None,
              on_trial: Optional[Callable] = None) -> SweepResult:
    """Run ``trials`` trials in this process against the shared study (the baseline trial first)."""
    optuna = require_optuna()
    if trials < 1:
        raise UserError(f"--trials must be >= 1, got {trials}")
    base = resolved_config(base)
    check_space(space, base)  # names, types and bounds, before any data is loaded
    db = _storage(optuna, storage)  # a bad URL fails before the data loads
    base, data, note = sweep_data(base)
    if log is not None:
        log(note)
    if len(data.val) == 0:
        raise UserError(f"{base.data}: the validation split is empty; a sweep needs one")
    baseline = check_space(space, base)
    study = open_study(storage, study_name, fingerprint(base, space), sampler_seed, db)
    study.enqueue_trial(baseline, user_attrs={"baseline": True}, skip_if_exists=True)
    callbacks = [on_trial] if on_trial is not None else []
    study.optimize(Objective(base, space, data), n_trials=trials, catch=(NonFiniteLossError,),
                   callbacks=callbacks)
    return SweepResult(study, note, base)


def completed(study) -> list:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


def baseline_trial(study):
    """The first completed baseline trial (the base config's values), or None."""
    return next((t for t in completed(study) if t.user_attrs.get("baseline")), None)


def best_trial(study):
    """The completed trial with the highest value (the earliest among ties), or None."""
    trials = completed(study)
    return max(trials, key=lambda t: (t.value, -t.number)) if trials else None
