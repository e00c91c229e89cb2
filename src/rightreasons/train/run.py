"""A run end to end: config -> data, model, method -> fit -> metrics -> a run directory.

A run directory holds ``model.safetensors`` (weights), ``config.json`` (the fully resolved
:class:`TrainConfig`, reusable with ``rightreasons train --config``), ``metrics.json``, ``run.json`` (the
manifest: format version and the sha256 of every file above) and ``checkpoints/`` (the latest per-epoch
checkpoint, for ``--resume``). Runs written before the manifest existed (no ``run.json``) load as before.

Writing is all or nothing and locked (the mechanics are in :mod:`.rundir`): :func:`save_run` stages the
new files (with ``train --overwrite`` the new run's checkpoints too), writes the manifest last, and replaces
the old run only once the new one is complete; a second process writing the same directory is refused.

Loading verifies the manifest when there is one (a changed byte is an error naming the file), refuses
weights that are NaN or infinite, and imports no code: a model given as ``package.module:factory`` in a
run's config.json is built only with ``trust_code=True`` (``--trust-code``), since a downloaded run
directory could name any module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ..data import DataSplits, load_dataset
from ..devices import resolve_device
from ..errors import UserError
from ..files import failure_cause, fsync_dir, write_synced
from ..methods import create_method
from ..metrics.evaluate import evaluate
from ..metrics.robust import robust_metrics
from ..models import create_model
from ..models.registry import imports_code
from ..models.text import TEXT_MODELS
from .checkpoint import CheckpointError, latest_checkpoint, read_meta
from .config import TrainConfig
from .distributed import training_device
from .resume import resume_differences
from .rundir import (
    CHECKPOINTS,
    COMMIT,
    MANIFEST,
    MANIFEST_FORMAT,
    PLAIN_NAME,
    PLAN,
    RUN_FILES,
    STAGING,
    finish_commit,
    new_staging,
    old_manifest_files,
    parse_run_json,
    read_run_file,
    run_file,
    run_internals,
    run_lock,
    settle,
    signals_deferred,
    verified_run,
)
from .selection import selection_outcomes
from .trainer import fit


@dataclass
class RunOutput:
    model: nn.Module
    config: TrainConfig
    metrics: dict
    data: DataSplits


def build_model(config: TrainConfig, input_shape, num_classes: int, data_given: Optional[dict] = None) -> nn.Module:
    """The model the config names, initialised from ``config.seed`` without touching the global RNG.
    ``data_given``: options the data fixes (a text dataset's ``vocab_size``), see :func:`data_model_options`."""
    data_given = dict(data_given or {})
    name = config.model_name()
    if data_given and not (name in TEXT_MODELS or name.startswith("hf:") or imports_code(name)):
        raise UserError(f"model {name!r} takes images or tables, and the data is text: train text-bag, text-cnn, "
                        "text-transformer or hf:DIR on it (--model)")
    clash = sorted(set(data_given) & set(config.model_options))
    if clash:
        raise UserError(f"model option(s) {', '.join(clash)}: set by the data, not on the command line")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return create_model(name, input_shape, num_classes, **config.model_options, **data_given)


def vocabulary_record(data: DataSplits) -> dict:
    """For text data, ``{"vocabulary": {"size", "sha256"}}`` (what ``load_run`` checks the data against)."""
    vocab = getattr(data.train, "vocab", None)
    return {"vocabulary": {"size": len(vocab), "sha256": vocab.fingerprint()}} if vocab is not None else {}


def check_vocabulary(run_dir: Path, manifest, data: DataSplits) -> None:
    """Refuse text data whose vocabulary is not the one the run was trained with (the token ids would
    mean other words); runs without a recorded vocabulary are not checked."""
    if getattr(data.train, "vocab", None) is None or not run_file(run_dir, "metrics.json").exists():
        return
    recorded = parse_run_json(read_run_file(run_dir, "metrics.json", manifest), run_dir / "metrics.json", "metrics")
    recorded = recorded.get("vocabulary") if isinstance(recorded, dict) else None
    if isinstance(recorded, dict) and recorded.get("sha256") != data.train.vocab.fingerprint():
        raise UserError(f"{run_dir}: was trained with another vocabulary ({recorded.get('size')} words) than "
                        f"this data's ({len(data.train.vocab)}): its token ids would mean other words; evaluate it "
                        "on the data it was trained on")


def data_model_options(data: DataSplits, model: Optional[str] = None) -> dict:
    """What the data fixes of the model: a text dataset's vocabulary size (and, for a Hugging Face model
    ``hf:PATH``, its words, to map them to the model's tokens); nothing for other data."""
    options = dict(getattr(data.train, "model_options", {}))
    if options and str(model).startswith("hf:"):
        options["vocabulary"] = list(data.train.vocab.words)
    return options


def resolved_config(config: TrainConfig) -> TrainConfig:
    """The config with the method's hyperparameters filled in with their defaults (validated) and the
    model, the number of epochs and the batch size named ("auto" / None -> the dataset's defaults)."""
    method = create_method(config.method, **config.params)
    return config.replace(model=config.model_name(), epochs=config.epoch_count(), batch_size=config.batch_size_used(),
                          params=dict(method.params))


def check_trusted_model(model: str, where: str, trust_code: bool) -> None:
    """Refuse to build a model named as ``package.module:factory`` that came from a file (a run's config.json,
    a checkpoint) unless ``trust_code``: building it imports that module, which runs its code."""
    if trust_code or not imports_code(str(model)):
        return
    module = str(model).partition(":")[0]
    raise UserError(f"{where}: names model {model!r}, which would import and run the Python module {module!r}; "
                    "pass --trust-code (trust_code=True) if you trust this run")


def check_out_dir(out: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Refuse to write into a directory that already holds a run (or its checkpoints), unless ``overwrite``
    (start again: the old run stays until the new one is complete) or ``resume`` (continue it); refuse a
    directory inside a run's checkpoints. Deletes nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    inside = run_internals(out)
    if inside is not None:
        raise UserError(f"{out}: is inside {inside}, which holds a run's checkpoints or files being written; "
                        "choose an --out of its own")
    existing = [name for name in (*RUN_FILES, MANIFEST, CHECKPOINTS) if (out / name).exists()]
    if existing and not (overwrite or resume):
        raise UserError(f"{out}: already holds a run ({', '.join(existing)}); choose another --out, "
                        "or pass --resume or --overwrite")
    return out


@dataclass
class TrainingDirs:
    """Where ``rightreasons train`` writes: the checkpoint directory, and the staging directory of a run
    that replaces another (None when nothing is replaced)."""

    out: Path
    checkpoint_dir: Path
    staging: Optional[Path] = None

    def abort(self) -> None:
        """Remove the staging directory of a run that did not complete (a no-op once it is committed)."""
        if self.staging is not None and self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)


def prepare_training(out: str | Path, config: TrainConfig, overwrite: bool = False,
                     resume: bool = False) -> TrainingDirs:
    """For ``rightreasons train``, with ``out`` locked (:func:`run_lock`): finish or drop what an interrupted
    process left, check ``out`` (:func:`check_out_dir`), check that a resume has something to do with
    ``config`` (:func:`check_resume`), and choose the checkpoint directory: ``out/checkpoints``, or with
    ``overwrite`` of an existing run a staging directory inside ``out``, so the old run stays whole until
    the new one is saved."""
    out = Path(out)
    settle(out)
    check_out_dir(out, overwrite, resume)
    if (out / CHECKPOINTS).is_symlink() and not overwrite:  # checkpoints are written and pruned in place
        raise UserError(f"{out / CHECKPOINTS}: a symbolic link; a run's checkpoints must be a directory of its own "
                        "(--overwrite replaces the link, not what it points to)")
    if resume:
        check_resume(out, config)
        return TrainingDirs(out, out / CHECKPOINTS)
    if overwrite and any((out / name).exists() for name in (*RUN_FILES, MANIFEST, CHECKPOINTS)):
        staging = new_staging(out)
        return TrainingDirs(out, staging / CHECKPOINTS, staging)
    return TrainingDirs(out, out / CHECKPOINTS)


def check_resume(out: str | Path, config: TrainConfig) -> Path:
    """The latest checkpoint of the run in ``out``, refusing in one line a resume that has nothing to do or
    cannot be done: no checkpoint, fewer epochs than the checkpoint has done, another config (all but
    ``epochs`` and ``threads``), or a run already finished with ``config.epochs`` epochs."""
    out = Path(out)
    latest = latest_checkpoint(out / CHECKPOINTS) if out.is_dir() else None
    if latest is None:
        raise UserError(f"{out}: nothing to resume (no checkpoint in {out / CHECKPOINTS}); train without --resume "
                        "to start a run there")
    meta = read_meta(latest)
    done = meta.get("epoch")
    if not isinstance(done, int) or isinstance(done, bool) or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{latest / 'meta.json'}: not a rightreasons checkpoint (no epoch or config)")
    epochs = config.epoch_count()
    if epochs < done:
        raise UserError(f"{out}: its checkpoint has done {done} epochs; cannot resume to {epochs} (a resume never "
                        f"undoes epochs): pass --epochs {done} or more, or --overwrite to train a new run")
    differ = resume_differences(meta["config"], config)
    if differ:
        raise CheckpointError(f"{latest}: was written by a run with different {', '.join(differ)}; cannot resume")
    if epochs == done and finished_epochs(out) == done:
        raise UserError(f"{out}: nothing to resume: the run has finished all {done} epochs; pass --epochs N "
                        f"(more than {done}) to train on, or --overwrite to train it again")
    return latest


def finished_epochs(run_dir: str | Path) -> Optional[int]:
    """The epochs of the complete run saved in ``run_dir`` (None when it holds none, or an invalid one)."""
    try:
        config, _ = read_finished_run(run_dir)
    except UserError:
        return None
    epochs = config.get("epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None


# ---------------------------------------------------------------------------------------------------------
# running and saving


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
    ``checkpoint_dir`` after every epoch and, with ``resume``, continuing from its latest checkpoint). With
    ``config.robustness`` set, also the robustness report of ``metrics.robustness`` on the test split at those
    settings, as ``metrics["test"]["robustness"]`` (random restarts seeded with ``config.seed``)."""
    from ..metrics.robustness import report_from_settings

    config = resolved_config(config)
    method = create_method(config.method, **config.params)
    if data is None:
        data = load_dataset(config.data, seed=config.seed, **config.data_options)
    model = build_model(config, data.input_shape, data.num_classes, data_model_options(data, config.model))
    model = model.to(training_device(config.device))
    result = fit(model, method, data, config, log=log, progress=progress, checkpoint_dir=checkpoint_dir, resume=resume)
    metrics = {
        **vocabulary_record(data),
        "test": {**evaluate(model, data.test), **robust_metrics(model, data.test)},
        "val": evaluate(model, data.val),
        "train_seconds": result.train_seconds,
        "selected_epoch": result.selected_epoch,
        "history": result.history,
    }
    if config.compare_selections:  # which epoch each selection rule keeps, and its test scores
        metrics["selections"] = selection_outcomes(result.history)
    if config.robustness is not None:
        if log is not None:
            log(f"robustness on test: {config.robustness}")
        metrics["test"]["robustness"] = report_from_settings(model, data.test, config.robustness, config.method,
                                                             config.params, seed=config.seed)
    return RunOutput(model, config, metrics, data)


def _nonfinite_weight(state: dict) -> Optional[str]:
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            return name
    return None


def save_run(out: str | Path, output: RunOutput, checkpoints: Optional[str | Path] = None,
             staging: Optional[str | Path] = None, extra: Optional[dict[str, bytes]] = None) -> Path:
    """Write the run into ``out``: model.safetensors, config.json, metrics.json, the ``extra`` files (name ->
    bytes) and the manifest run.json, all or nothing. The files are built in a staging directory (``staging``,
    or a new one inside ``out``) and replace an old run's only once complete, so a failure (a full disk, a
    file-size limit: one line naming the file and the cause) leaves ``out`` as it was. ``checkpoints``: the
    new run's checkpoint directory; one inside ``staging`` replaces ``out/checkpoints``, otherwise
    ``out/checkpoints`` is left as it is. Weights that are NaN or infinite are refused."""
    out = Path(out)
    extra = dict(extra or {})
    for name in extra:
        if not PLAIN_NAME.match(name) or name in (*RUN_FILES, MANIFEST, CHECKPOINTS):
            raise ValueError(f"save_run: extra file name {name!r} is not a plain file name of its own")
    state = {k: v.detach().cpu().contiguous() for k, v in output.model.state_dict().items()}
    bad = _nonfinite_weight(state)
    if bad is not None:
        raise UserError(f"{out}: not saved: the trained weights are not finite (NaN or inf in {bad!r})")
    blobs = {"model.safetensors": safetensors_bytes(state),
             "config.json": (json.dumps(output.config.to_dict(), indent=2) + "\n").encode(),
             "metrics.json": (json.dumps(output.metrics, indent=2, allow_nan=True) + "\n").encode(),
             **extra}
    with run_lock(out):
        settle(out, keep=Path(staging) if staging is not None else None)
        stage = Path(staging) if staging is not None else new_staging(out)
        try:
            name = ""
            for name, data in blobs.items():
                write_synced(stage / name, data, exclusive=True)
            manifest = {"format": MANIFEST_FORMAT, "tool": "rightreasons",
                        "files": {n: hashlib.sha256(d).hexdigest() for n, d in blobs.items()}}
            name = MANIFEST
            write_synced(stage / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode(), exclusive=True)
            staged = checkpoints is not None and Path(checkpoints) == stage / CHECKPOINTS and \
                (stage / CHECKPOINTS).is_dir()
            # the old run's files the new one does not have (extra files listed in its manifest)
            remove = sorted(set(old_manifest_files(out)) - set(blobs) - {MANIFEST})
            plan = {"move": [CHECKPOINTS] * staged + list(blobs) + [MANIFEST], "remove": remove}
            name = PLAN
            write_synced(stage / PLAN, json.dumps(plan).encode(), exclusive=True)
            fsync_dir(stage, ignore_errors=True)
            name = ""
            commit = out / (COMMIT + stage.name[len(STAGING):])
            with signals_deferred():  # Ctrl-C waits until the committed run is in place (a few renames)
                os.rename(stage, commit)  # the new run is written from here on
                stage = None
                fsync_dir(out, ignore_errors=True)
                finish_commit(out, commit)
        except BaseException as exc:
            if stage is not None:
                shutil.rmtree(stage, ignore_errors=True)
            if isinstance(exc, (OSError, SafetensorError, RuntimeError)):
                where = out / name if name else out
                why = failure_cause(exc)
                raise UserError(f"{where}: cannot write the run ({why}); {out} is left as it was") from None
            raise
    return out


def _load_config(run_dir: Path, manifest: Optional[dict], trust_code: bool) -> TrainConfig:
    path = run_dir / "config.json"
    raw = parse_run_json(read_run_file(run_dir, "config.json", manifest), path, "config")
    config = TrainConfig.from_dict(raw, where=str(path))
    check_trusted_model(config.model, f"{run_dir}: its config.json", trust_code)
    return config


def load_run(run_dir: str | Path, data: Optional[DataSplits] = None, trust_code: bool = False,
             device: str = "cpu") -> tuple[nn.Module, TrainConfig, DataSplits]:
    """Rebuild a saved model (weights loaded safely from safetensors, onto ``device``: a run trained on a
    GPU loads on the CPU) and its config and data. Verifies the manifest when there is one, refuses weights
    that are NaN or infinite, and refuses a config that names a model as ``package.module:factory``
    (importing it runs that module) unless ``trust_code``."""
    run_dir = Path(run_dir)
    manifest = verified_run(run_dir)
    config = _load_config(run_dir, manifest, trust_code)
    weights = read_run_file(run_dir, "model.safetensors", manifest)
    if data is None:
        data = load_dataset(config.data, seed=config.seed, **config.data_options)
    check_vocabulary(run_dir, manifest, data)
    # the run's own weights replace whatever a weights=PATH model option loaded at training time (that file
    # need not exist any more)
    options = {k: v for k, v in config.model_options.items() if k != "weights"}
    model = build_model(config.replace(model_options=options), data.input_shape, data.num_classes,
                        data_model_options(data, config.model))
    try:
        state = load_safetensors(weights)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{run_dir / 'model.safetensors'}: cannot read weights ({failure_cause(exc)})") from None
    bad = _nonfinite_weight(state)
    if bad is not None:
        raise UserError(f"{run_dir}: model.safetensors holds weights that are not finite (NaN or inf in {bad!r}); "
                        "a model like that has no meaningful predictions to evaluate")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{run_dir / 'model.safetensors'}: weights do not fit model {config.model!r} "
                        f"({first})") from None
    return model.to(resolve_device(device)), config, data


def load_run_on(run_dir: str | Path, dataset: Optional[str] = None, data_options: Optional[dict] = None,
                trust_code: bool = False, device: str = "cpu") -> tuple[nn.Module, TrainConfig, DataSplits]:
    """:func:`load_run`, with the model evaluated on ``dataset`` (default: the run's own) built with the
    run's seed. The run's data options carry over when the dataset is the run's own; ``data_options``
    are merged over them."""
    if dataset is None and not data_options:
        return load_run(run_dir, trust_code=trust_code, device=device)
    run_dir = Path(run_dir)
    config = _load_config(run_dir, verified_run(run_dir), trust_code)
    options = {**(config.data_options if dataset in (None, config.data) else {}), **(data_options or {})}
    return load_run(run_dir, data=load_dataset(dataset or config.data, seed=config.seed, **options),
                    trust_code=trust_code, device=device)


def read_finished_run(run_dir: str | Path) -> tuple[dict, dict]:
    """(config, metrics) of the complete run in ``run_dir``, as JSON objects: config.json an object,
    metrics.json an object with a ``test`` object, model.safetensors present, and every file the manifest
    lists matching it. Anything else is a one-line :class:`UserError` saying what is wrong."""
    run_dir = Path(run_dir)
    manifest = verified_run(run_dir)
    config = parse_run_json(read_run_file(run_dir, "config.json", manifest), run_dir / "config.json", "config")
    if not isinstance(config, dict):
        raise UserError(f"{run_dir / 'config.json'}: expected a JSON object, got {type(config).__name__}")
    metrics = parse_run_json(read_run_file(run_dir, "metrics.json", manifest), run_dir / "metrics.json", "metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test"), dict):
        raise UserError(f"{run_dir / 'metrics.json'}: not the metrics of a run (an object with \"test\" expected)")
    read_run_file(run_dir, "model.safetensors", manifest)
    return config, metrics


def read_metrics(run_dir: str | Path) -> dict:
    """The metrics of the complete run in ``run_dir`` (see :func:`read_finished_run`)."""
    return read_finished_run(run_dir)[1]
