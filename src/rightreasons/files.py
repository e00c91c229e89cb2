"""Files: atomic writes (a crash mid-write leaves the previous file, or none, never a partial one) and
JSON reads that fail in one line naming the file."""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import UserError


def umask() -> int:
    """The process's umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_synced(path: str | Path, data: bytes, exclusive: bool = False) -> None:
    """Write ``data`` to a new file at ``path`` (0666 minus the umask, like the user's own files; with
    ``exclusive`` an existing file is an error) and fsync it."""
    with open(path, "xb" if exclusive else "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: str | Path, ignore_errors: bool = False) -> None:
    """fsync a directory, so that renames in it survive a crash."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if not ignore_errors:
            raise


def failure_cause(exc: BaseException) -> str:
    """Why a write failed, in a few words: the OS error's text, or the first line of a library's message
    (with its ``os error N`` turned into the OS's text)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    found = re.search(r"os error (\d+)", text)
    return os.strerror(int(found.group(1))) if found else text


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, then rename it into place.
    The file gets the permissions an ordinary ``open(path, "w")`` would give (0666 minus the umask),
    not the owner-only mode of a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


#: the most ``read_text`` and ``read_json`` read by default (machine-written files: metrics with a long
#: history, checkpoint metadata, results tables)
MAX_TEXT_BYTES = 256 * 2**20
MAX_JSON_BYTES = MAX_TEXT_BYTES
#: the most a hand-written settings file (config.json, a search space) may hold
MAX_SETTINGS_BYTES = 16 * 2**20


def _size_text(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 and n % 2**20 == 0 else f"{n} bytes"


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return word
    return "not a regular file"


def shown_path(path: str | Path) -> str:
    """``path`` as it goes into a one-line message (control characters such as a newline escaped)."""
    text = str(path)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown_value(value: Any, width: int = 80) -> str:
    """``repr(value)`` as it goes into a one-line message: at most about ``width`` characters (an integer
    too long for Python to print is described by its size)."""
    try:
        text = repr(value)
    except ValueError:  # more digits than Python converts to text
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= width else f"{text[:width - 20]}... ({len(text)} characters)"


def read_text(path: str | Path, what: str = "file", limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark dropped); a missing or unreadable file, one that
    is not a regular file (a directory, a named pipe: checked before opening, so reading never blocks), one
    larger than ``limit`` bytes or not UTF-8 is a one-line :class:`UserError` naming it and saying what it
    is (``what``)."""
    path = Path(path)
    shown = shown_path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{shown}: cannot read {what} (it is {_kind(info.st_mode)}, not a file)")
        if info.st_size > limit:
            raise UserError(f"{shown}: cannot read {what} ({info.st_size} bytes; the limit is {_size_text(limit)})")
        # non-blocking open: should a pipe replace the file after the stat, opening it does not hang
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise UserError(f"{shown}: cannot read {what} (not a regular file)")
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise UserError(f"{shown}: cannot read {what} ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise UserError(f"{shown}: cannot read {what} (larger than the limit of {_size_text(limit)})")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{shown}: cannot read {what} (not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset "
                        f"{exc.start})") from None


def read_json(path: str | Path, what: str = "JSON file", limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in ``path``; a missing, unreadable, oversized (``limit`` bytes) or invalid file is a
    one-line :class:`UserError` naming the file (and the line and column of a syntax error). ``what`` says
    what the file is. Lenient about NaN and Infinity (Python's own JSON writes them; the readers of each
    field refuse them where they make no sense)."""
    text = read_text(path, what, limit)
    shown = shown_path(Path(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{shown}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise UserError(f"{shown}: cannot read {what} (JSON nested too deeply)") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise UserError(f"{shown}: cannot read {what} (a number in it has too many digits: "
                        f"{str(exc).split(':')[0]})") from None
