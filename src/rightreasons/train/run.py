"""A run end to end: config -> data, model, method -> fit -> metrics -> a run directory.

A run directory holds ``model.safetensors`` (weights), ``config.json`` (the fully resolved
:class:`TrainConfig`, reusable with ``rightreasons train --config``), ``metrics.json``, ``run.json`` (the
manifest: format version and the sha256 of every file above) and ``checkpoints/`` (the latest per-epoch
checkpoint, for ``--resume``). Runs written before the manifest existed (no ``run.json``) load as before.

Writing is all or nothing. :func:`save_run` builds the new files in ``DIR/.staging-XXXX/`` (with ``train
--overwrite`` the new run's checkpoints go there too), writes the manifest last, renames the directory to
``DIR/.commit-XXXX/`` (the moment the new run counts as written) and only then moves its files over the old
ones. A failure or a kill before that rename leaves the old run untouched (a staging directory left by a kill
is removed by the next command that writes there); one after it is finished by the next command that reads
or writes the directory. While a process writes a run directory it holds an advisory lock on
``DIR/.rightreasons.lock`` (``fcntl.flock``, dropped by the OS if the process dies), so a second process is
refused in one line instead of silently replacing the first one's run.

Loading verifies the manifest when there is one (a changed byte is an error naming the file), refuses
weights that are NaN or infinite, and imports no code: a model given as ``package.module:factory`` in a
run's config.json is built only with ``trust_code=True`` (``--trust-code``), since a downloaded run
directory could name any module.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ..data import DataSplits, load_dataset
from ..errors import UserError
from ..files import failure_cause, fsync_dir, read_json, umask, write_synced
from ..methods import create_method
from ..metrics.evaluate import evaluate
from ..metrics.robust import robust_metrics
from ..models import create_model
from .checkpoint import LATEST, CheckpointError, latest_checkpoint, read_meta
from .config import TrainConfig
from .trainer import RESUMABLE_CHANGES, fit

RUN_FILES = ("model.safetensors", "config.json", "metrics.json")
CHECKPOINTS = "checkpoints"
MANIFEST = "run.json"
MANIFEST_FORMAT = 1
LOCK = ".rightreasons.lock"
STAGING = ".staging-"
COMMIT = ".commit-"
PLAN = ".plan.json"
#: what a run directory's own names look like (no path separators, no hidden names)
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
#: the largest run files read (into memory, to verify and parse them): weights, and JSON files
_MAX_RUN_FILE = 4 * 2**30
_MAX_RUN_JSON = 64 * 2**20


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


def check_trusted_model(model: str, where: str, trust_code: bool) -> None:
    """Refuse to build a model named as ``package.module:factory`` that came from a file (a run's config.json,
    a checkpoint) unless ``trust_code``: building it imports that module, which runs its code."""
    if trust_code or ":" not in str(model):
        return
    module = str(model).partition(":")[0]
    raise UserError(f"{where}: names model {model!r}, which would import and run the Python module {module!r}; "
                    "pass --trust-code (trust_code=True) if you trust this run")


# ---------------------------------------------------------------------------------------------------------
# the lock


#: run directories this process holds locked: real path -> [file descriptor, depth]
_HELD: dict[str, list] = {}
_HELD_GUARD = threading.Lock()


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return "another process"
    return f"another process (pid {pid})" if pid.isdigit() else "another process"


def _make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; returns those created, outermost first."""
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        if path.is_symlink() and not path.exists():
            raise UserError(f"{path}: a symbolic link to {os.readlink(path)}, which does not exist") from None
        raise UserError(f"{path}: exists and is not a directory") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot create the run directory ({exc.strerror or exc})") from None
    return list(reversed(missing))


def _acquire(out: Path) -> int:
    import fcntl

    lock = out / LOCK
    while True:
        if lock.is_symlink():
            raise UserError(f"{lock}: a symbolic link, not a lock file of rightreasons; remove it to use {out}")
        try:  # never through a link: the file is written to (a link could lead to a file of the user's own)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0),
                         0o666)
        except OSError as exc:
            raise UserError(f"{out}: cannot lock the run directory ({exc.strerror or exc})") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            os.close(fd)
            kind = "a hard link" if stat.S_ISREG(info.st_mode) else "not a regular file"
            raise UserError(f"{lock}: not a lock file of rightreasons ({kind}); remove it to use {out}")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise UserError(f"{out}: {_holder(lock)} is using this run directory; wait for it to finish, "
                                "or choose another --out") from None
            raise UserError(f"{out}: cannot lock the run directory ({exc.strerror or exc})") from None
        try:  # the file may have been removed (and recreated) by its previous holder in the meantime
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            with contextlib.suppress(OSError):  # the pid only informs the message of a refused process
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


@contextlib.contextmanager
def run_lock(out: str | Path) -> Iterator[Path]:
    """Hold ``out`` (created if missing) for writing: an exclusive ``flock`` on ``out/.rightreasons.lock``,
    refused in one line while another process holds it. Re-entrant within a process. On release the lock
    file is removed, and so are the directories this call created if they are still empty."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    key = os.path.realpath(out)
    with _HELD_GUARD:
        if key in _HELD:
            _HELD[key][1] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield out
        finally:
            with _HELD_GUARD:
                _HELD[key][1] -= 1
        return
    created = _make_dirs(out)
    try:
        fd = _acquire(out)
    except BaseException:
        _remove_empty(created)
        raise
    with _HELD_GUARD:
        _HELD[key] = [fd, 1]
    try:
        yield out
    finally:
        with _HELD_GUARD:
            del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(out / LOCK)  # still holding it: a process that opened it meanwhile sees it gone and retries
        os.close(fd)
        _remove_empty(created)


def _remove_empty(created: list[Path]) -> None:
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            return


def _holding(out: Path) -> bool:
    with _HELD_GUARD:
        return os.path.realpath(out) in _HELD


# ---------------------------------------------------------------------------------------------------------
# checks of --out


def run_internals(out: str | Path) -> Optional[Path]:
    """The checkpoint directory, checkpoint or staging directory that ``out`` is (or lies inside), if any."""
    out = Path(os.path.abspath(out))
    for path in (out, *out.parents):
        if path.name.startswith((STAGING, COMMIT, ".epoch-")):
            return path
        if path.name == CHECKPOINTS and any((path.parent / n).exists() for n in (*RUN_FILES, MANIFEST)):
            return path
        if _is_checkpoint(path) or ((path / LATEST).is_file() and any(_is_checkpoint(p) for p in path.glob("epoch-*"))):
            return path
    return None


def _is_checkpoint(path: Path) -> bool:
    return bool(re.fullmatch(r"epoch-\d+", path.name)) and (path / "meta.json").is_file()


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
        staging = _new_staging(out)
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
    saved, current = meta["config"], config.to_dict()
    differ = sorted(k for k in set(saved) | set(current)
                    if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))
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
    model = build_model(config, data.input_shape, data.num_classes)
    result = fit(model, method, data, config, log=log, progress=progress, checkpoint_dir=checkpoint_dir, resume=resume)
    metrics = {
        "test": {**evaluate(model, data.test), **robust_metrics(model, data.test)},
        "val": evaluate(model, data.val),
        "train_seconds": result.train_seconds,
        "selected_epoch": result.selected_epoch,
        "history": result.history,
    }
    if config.robustness is not None:
        if log is not None:
            log(f"robustness on test: {config.robustness}")
        metrics["test"]["robustness"] = report_from_settings(model, data.test, config.robustness, config.method,
                                                             config.params, seed=config.seed)
    return RunOutput(model, config, metrics, data)




def _new_staging(out: Path) -> Path:
    try:
        staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=out))
        os.chmod(staging, 0o777 & ~umask())  # as mkdir would make it (mkdtemp makes it owner-only)
    except OSError as exc:
        raise UserError(f"{out}: cannot create a staging directory ({exc.strerror or exc})") from None
    return staging








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
        if not _PLAIN_NAME.match(name) or name in (*RUN_FILES, MANIFEST, CHECKPOINTS):
            raise ValueError(f"save_run: extra file name {name!r} is not a plain file name of its own")
    state = {k: v.detach().contiguous() for k, v in output.model.state_dict().items()}
    bad = _nonfinite_weight(state)
    if bad is not None:
        raise UserError(f"{out}: not saved: the trained weights are not finite (NaN or inf in {bad!r})")
    blobs = {"model.safetensors": safetensors_bytes(state),
             "config.json": (json.dumps(output.config.to_dict(), indent=2) + "\n").encode(),
             "metrics.json": (json.dumps(output.metrics, indent=2, allow_nan=True) + "\n").encode(),
             **extra}
    with run_lock(out):
        settle(out, keep=Path(staging) if staging is not None else None)
        stage = Path(staging) if staging is not None else _new_staging(out)
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
            remove = sorted(set(_old_manifest_files(out)) - set(blobs) - {MANIFEST})
            plan = {"move": [CHECKPOINTS] * staged + list(blobs) + [MANIFEST], "remove": remove}
            name = PLAN
            write_synced(stage / PLAN, json.dumps(plan).encode(), exclusive=True)
            fsync_dir(stage, ignore_errors=True)
            name = ""
            commit = out / (COMMIT + stage.name[len(STAGING):])
            with _signals_deferred():  # Ctrl-C waits until the committed run is in place (a few renames)
                os.rename(stage, commit)  # the new run is written from here on
                stage = None
                fsync_dir(out, ignore_errors=True)
                _finish_commit(out, commit)
        except BaseException as exc:
            if stage is not None:
                shutil.rmtree(stage, ignore_errors=True)
            if isinstance(exc, (OSError, SafetensorError, RuntimeError)):
                where = out / name if name else out
                why = failure_cause(exc)
                raise UserError(f"{where}: cannot write the run ({why}); {out} is left as it was") from None
            raise
    return out


def _old_manifest_files(out: Path) -> list[str]:
    """The files of the run in ``out`` that its manifest lists and that are still as it wrote them (so a file
    of the user's own, or one changed since, is never taken for part of the old run)."""
    try:
        files = json.loads((out / MANIFEST).read_text())["files"]
        names = [n for n, digest in files.items() if isinstance(n, str) and _PLAIN_NAME.match(n)
                 and (out / n).is_file() and not (out / n).is_symlink()
                 and hashlib.sha256((out / n).read_bytes()).hexdigest() == digest]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    return names


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM for the few renames that put a committed run in place."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _finish_commit(out: Path, commit: Path) -> None:
    """Put the committed run in ``commit`` in place in ``out`` (idempotent: redone after a crash)."""
    try:
        plan = json.loads((commit / PLAN).read_text())
        move = [n for n in plan["move"] if _PLAIN_NAME.match(n)]
        remove = [n for n in plan["remove"] if _PLAIN_NAME.match(n)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{commit}: an interrupted update of {out} that cannot be finished ({failure_cause(exc)}); "
                        f"move {commit} away to use {out} as it is") from None
    trash = commit / ".old"
    try:
        trash.mkdir(exist_ok=True)

        def discard(name: str) -> None:
            if (trash / name).exists() or (trash / name).is_symlink():
                _remove(trash / name)
            os.replace(out / name, trash / name)

        for name in remove:
            if (out / name).exists() or (out / name).is_symlink():
                discard(name)
        for name in move:
            source, target = commit / name, out / name
            if not (source.exists() or source.is_symlink()):
                continue  # moved before an interruption
            if target.is_dir() and not target.is_symlink() or source.is_dir():
                if target.exists() or target.is_symlink():
                    discard(name)
            os.replace(source, target)
        fsync_dir(out, ignore_errors=True)
        shutil.rmtree(commit)
    except OSError as exc:
        raise UserError(f"{out}: cannot put the new run in place ({failure_cause(exc)}); it is kept in {commit} "
                        f"and put in place by the next command that reads or writes {out}") from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def settle(out: str | Path, keep: Optional[Path] = None) -> None:
    """With ``out`` locked: finish the updates a killed process had committed (``.commit-*``), and remove the
    staging directories (``.staging-*``, except ``keep``) and half-written temporary files it left."""
    out = Path(out)
    if not out.is_dir():
        return
    for entry in sorted(out.iterdir()):
        if entry.is_symlink():  # nothing of ours is a link: never followed
            continue
        if entry.name.startswith(COMMIT) and entry.is_dir():
            _finish_commit(out, entry)
        elif entry.name.startswith(STAGING) and entry.is_dir() and (keep is None or entry != keep):
            shutil.rmtree(entry, ignore_errors=True)
        elif (entry.name.startswith(tuple(f".{n}." for n in (*RUN_FILES, MANIFEST))) and entry.name.endswith(".tmp")
              and entry.is_file()):
            entry.unlink(missing_ok=True)  # the temporary file of an atomic write cut short (older versions)


def _settle_for_reading(run_dir: Path) -> None:
    """Finish an update of ``run_dir`` a killed process had committed, before reading it."""
    try:
        pending = [p for p in run_dir.iterdir() if p.name.startswith(COMMIT) and p.is_dir() and not p.is_symlink()]
    except OSError:
        return
    if not pending:
        return
    if _holding(run_dir):
        settle(run_dir)
        return
    with run_lock(run_dir):
        settle(run_dir)


# ---------------------------------------------------------------------------------------------------------
# reading


def _run_file(run_dir: str | Path, name: str) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory (a run directory written by `rightreasons train` expected)")
    path = run_dir / name
    if path.exists() and not path.is_file():
        raise UserError(f"{path}: not a regular file (a run's {name} expected)")
    if not path.is_file():
        raise UserError(f"{run_dir}: missing {name} (not a run directory written by `rightreasons train`?)")
    return path


def read_manifest(run_dir: str | Path) -> Optional[dict]:
    """The run's manifest (``{"format", "files": {name: sha256}}``), or None for a run written before
    manifests existed; a manifest that is unreadable or not one is a one-line error."""
    path = Path(run_dir) / MANIFEST
    if not (path.exists() or path.is_symlink()):
        return None
    manifest = read_json(path, "run manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) \
            or not isinstance(manifest.get("format"), int) or isinstance(manifest.get("format"), bool):
        raise UserError(f"{path}: not a rightreasons run manifest (format and files expected)")
    if manifest["format"] > MANIFEST_FORMAT:
        raise UserError(f"{path}: written by a newer rightreasons (run format {manifest['format']}; this version "
                        f"reads up to {MANIFEST_FORMAT}); upgrade rightreasons to read it")
    for name, digest in manifest["files"].items():
        if not isinstance(name, str) or not _PLAIN_NAME.match(name) or not isinstance(digest, str):
            raise UserError(f"{path}: not a rightreasons run manifest (bad entry {name!r})")
    return manifest


#: what each run file is, in messages
_WHAT = {"model.safetensors": "weights", "config.json": "config", "metrics.json": "metrics"}


def _read_run_file(run_dir: Path, name: str, manifest: Optional[dict]) -> bytes:
    """The bytes of a run file, checked against the manifest's sha256 when it lists the file."""
    path = _run_file(run_dir, name)
    what = _WHAT.get(name, "run file")
    limit = _MAX_RUN_JSON if name.endswith(".json") else _MAX_RUN_FILE
    try:
        size = path.stat().st_size
        if size > limit:
            raise UserError(f"{path}: cannot read {what} ({size} bytes; too large for a run file)")
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    expected = (manifest or {}).get("files", {}).get(name)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise UserError(f"{path}: cannot read {what} (its sha256 does not match {MANIFEST}: the file is corrupt or "
                        "was changed after the run was saved)")
    return data


def _verified_run(run_dir: Path) -> Optional[dict]:
    """Check ``run_dir`` is a run directory, finish an interrupted update, and return its manifest (verifying
    that every file it lists is there)."""
    _run_file(run_dir, "config.json")
    _settle_for_reading(run_dir)
    manifest = read_manifest(run_dir)
    for name in (manifest or {}).get("files", {}):
        if (run_dir / name).exists() and not (run_dir / name).is_file():
            raise UserError(f"{run_dir / name}: not a regular file (listed in {MANIFEST} as a file)")
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir}: missing {name} (listed in {MANIFEST})")
    return manifest


def _parse_json(data: bytes, path: Path, what: str):
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: cannot read {what} (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (RecursionError, ValueError):
        raise UserError(f"{path}: cannot read {what} (not JSON this reader takes)") from None


def _load_config(run_dir: Path, manifest: Optional[dict], trust_code: bool) -> TrainConfig:
    path = run_dir / "config.json"
    raw = _parse_json(_read_run_file(run_dir, "config.json", manifest), path, "config")
    config = TrainConfig.from_dict(raw, where=str(path))
    check_trusted_model(config.model, f"{run_dir}: its config.json", trust_code)
    return config


def load_run(run_dir: str | Path, data: Optional[DataSplits] = None, trust_code: bool = False
             ) -> tuple[nn.Module, TrainConfig, DataSplits]:
    """Rebuild a saved model (weights loaded safely from safetensors) and its config and data. Verifies the
    manifest when there is one, refuses weights that are NaN or infinite, and refuses a config that names a
    model as ``package.module:factory`` (importing it runs that module) unless ``trust_code``."""
    run_dir = Path(run_dir)
    manifest = _verified_run(run_dir)
    config = _load_config(run_dir, manifest, trust_code)
    weights = _read_run_file(run_dir, "model.safetensors", manifest)
    if data is None:
        data = load_dataset(config.data, seed=config.seed, **config.data_options)
    model = build_model(config, data.input_shape, data.num_classes)
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
    return model, config, data


def load_run_on(run_dir: str | Path, dataset: Optional[str] = None, data_options: Optional[dict] = None,
                trust_code: bool = False) -> tuple[nn.Module, TrainConfig, DataSplits]:
    """:func:`load_run`, with the model evaluated on ``dataset`` (default: the run's own) built with the
    run's seed. The run's data options carry over when the dataset is the run's own; ``data_options``
    are merged over them."""
    if dataset is None and not data_options:
        return load_run(run_dir, trust_code=trust_code)
    run_dir = Path(run_dir)
    config = _load_config(run_dir, _verified_run(run_dir), trust_code)
    options = {**(config.data_options if dataset in (None, config.data) else {}), **(data_options or {})}
    return load_run(run_dir, data=load_dataset(dataset or config.data, seed=config.seed, **options),
                    trust_code=trust_code)


def read_finished_run(run_dir: str | Path) -> tuple[dict, dict]:
    """(config, metrics) of the complete run in ``run_dir``, as JSON objects: config.json an object,
    metrics.json an object with a ``test`` object, model.safetensors present, and every file the manifest
    lists matching it. Anything else is a one-line :class:`UserError` saying what is wrong."""
    run_dir = Path(run_dir)
    manifest = _verified_run(run_dir)
    config = _parse_json(_read_run_file(run_dir, "config.json", manifest), run_dir / "config.json", "config")
    if not isinstance(config, dict):
        raise UserError(f"{run_dir / 'config.json'}: expected a JSON object, got {type(config).__name__}")
    metrics = _parse_json(_read_run_file(run_dir, "metrics.json", manifest), run_dir / "metrics.json", "metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test"), dict):
        raise UserError(f"{run_dir / 'metrics.json'}: not the metrics of a run (an object with \"test\" expected)")
    _read_run_file(run_dir, "model.safetensors", manifest)
    return config, metrics


def read_metrics(run_dir: str | Path) -> dict:
    """The metrics of the complete run in ``run_dir`` (see :func:`read_finished_run`)."""
    return read_finished_run(run_dir)[1]
