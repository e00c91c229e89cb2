"""A run directory on disk: its layout, the lock that keeps two processes apart, the staged commit that
replaces a run only when the new one is complete, and verified reads of its files.

Layout: ``model.safetensors``, ``config.json``, ``metrics.json``, ``run.json`` (the manifest: format version
and the sha256 of the three files, written last) and ``checkpoints/``. A new run is built in
``DIR/.staging-XXXX/``, renamed to ``DIR/.commit-XXXX/`` (the moment it counts as written), and only then moved
over the old files (:func:`finish_commit`; :func:`settle` finishes an interrupted commit). While a process
writes a run directory it holds ``fcntl.flock`` on ``DIR/.rightreasons.lock`` (:func:`run_lock`).
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
from pathlib import Path
from typing import Iterator, Optional

from ..errors import UserError
from ..files import failure_cause, fsync_dir, read_json, umask
from .checkpoint import LATEST

RUN_FILES = ("model.safetensors", "config.json", "metrics.json")
CHECKPOINTS = "checkpoints"
MANIFEST = "run.json"
MANIFEST_FORMAT = 1
LOCK = ".rightreasons.lock"
STAGING = ".staging-"
COMMIT = ".commit-"
PLAN = ".plan.json"
#: what a run directory's own names look like (no path separators, no hidden names)
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
#: the largest run files read (into memory, to verify and parse them): weights, and JSON files
_MAX_RUN_FILE = 4 * 2**30
_MAX_RUN_JSON = 64 * 2**20



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


def new_staging(out: Path) -> Path:
    try:
        staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=out))
        os.chmod(staging, 0o777 & ~umask())  # as mkdir would make it (mkdtemp makes it owner-only)
    except OSError as exc:
        raise UserError(f"{out}: cannot create a staging directory ({exc.strerror or exc})") from None
    return staging


def old_manifest_files(out: Path) -> list[str]:
    """The files of the run in ``out`` that its manifest lists and that are still as it wrote them (so a file
    of the user's own, or one changed since, is never taken for part of the old run)."""
    try:
        files = json.loads((out / MANIFEST).read_text())["files"]
        names = [n for n, digest in files.items() if isinstance(n, str) and PLAIN_NAME.match(n)
                 and (out / n).is_file() and not (out / n).is_symlink()
                 and hashlib.sha256((out / n).read_bytes()).hexdigest() == digest]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    return names


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
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


def finish_commit(out: Path, commit: Path) -> None:
    """Put the committed run in ``commit`` in place in ``out`` (idempotent: redone after a crash)."""
    try:
        plan = json.loads((commit / PLAN).read_text())
        move = [n for n in plan["move"] if PLAIN_NAME.match(n)]
        remove = [n for n in plan["remove"] if PLAIN_NAME.match(n)]
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
            finish_commit(out, entry)
        elif entry.name.startswith(STAGING) and entry.is_dir() and (keep is None or entry != keep):
            shutil.rmtree(entry, ignore_errors=True)
        elif (entry.name.startswith(tuple(f".{n}." for n in (*RUN_FILES, MANIFEST))) and entry.name.endswith(".tmp")
              and entry.is_file()):
            entry.unlink(missing_ok=True)  # the temporary file of an atomic write cut short (older versions)


def settle_for_reading(run_dir: Path) -> None:
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


def run_file(run_dir: str | Path, name: str) -> Path:
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
        if not isinstance(name, str) or not PLAIN_NAME.match(name) or not isinstance(digest, str):
            raise UserError(f"{path}: not a rightreasons run manifest (bad entry {name!r})")
    return manifest


#: what each run file is, in messages
_WHAT = {"model.safetensors": "weights", "config.json": "config", "metrics.json": "metrics"}


def read_run_file(run_dir: Path, name: str, manifest: Optional[dict]) -> bytes:
    """The bytes of a run file, checked against the manifest's sha256 when it lists the file."""
    path = run_file(run_dir, name)
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


def verified_run(run_dir: Path) -> Optional[dict]:
    """Check ``run_dir`` is a run directory, finish an interrupted update, and return its manifest (verifying
    that every file it lists is there)."""
    run_file(run_dir, "config.json")
    settle_for_reading(run_dir)
    manifest = read_manifest(run_dir)
    for name in (manifest or {}).get("files", {}):
        if (run_dir / name).exists() and not (run_dir / name).is_file():
            raise UserError(f"{run_dir / name}: not a regular file (listed in {MANIFEST} as a file)")
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir}: missing {name} (listed in {MANIFEST})")
    return manifest


def parse_run_json(data: bytes, path: Path, what: str):
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: cannot read {what} (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (RecursionError, ValueError):
        raise UserError(f"{path}: cannot read {what} (not JSON this reader takes)") from None
