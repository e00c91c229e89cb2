"""Shared pieces of the user-data loaders (``folder:PATH`` and ``csv:PATH``): opening files safely
(regular files only, bounded reads), reading a CSV with row numbers, turning label and group cells into
integers, option parsing, and the seeded stratified split.

Row numbers are line numbers in the file as a spreadsheet shows them: the header is row 1, the first
example row 2. Every error is a one-line :class:`DataError` naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import re
import stat
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DataError, UserError
from .dataset import warn_missing_classes

SPLIT_NAMES = ("train", "val", "test")
#: fractions of each class sent to val and test when the data has no split column
DEFAULT_VAL_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.15
_INT = re.compile(r"[+-]?[0-9]+")  # ASCII digits only (``\d`` would also take other scripts' digits)
#: integer labels or groups above this are refused (a typo, not a class)
MAX_CLASSES = 100_000
#: a CSV file larger than this is refused (before reading it when its size is known; at most this many
#: bytes + 1 are ever read). The loaders parse the whole table into memory, so no usable table is larger.
MAX_CSV_BYTES = 1 << 30
#: at most this many columns, and this many cells (rows x columns) in one CSV file
MAX_CSV_COLUMNS = 100_000
MAX_CSV_CELLS = 100_000_000
_NONBLOCK = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def one_line_errors(loader):
    """Decorator: a UserError from ``loader`` whose message holds a line break or control character (from
    a file name or cell quoted into it) is re-raised with those characters escaped, so it stays one line."""

    @functools.wraps(loader)
    def wrapper(*args, **kwargs):
        try:
            return loader(*args, **kwargs)
        except UserError as exc:
            message = str(exc)
            if message.isprintable():
                raise
            escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
            raise type(exc)(escaped) from None

    return wrapper


def size_text(n: int) -> str:
    """``1 GiB``, ``512 MiB``, ``1000 bytes``: a byte count for messages."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _not_regular(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def open_regular(path: Path, what: str, where: Optional[str] = None, resolved: bool = False):
    """``(binary file object, os.stat_result)`` of ``path``, which must be a regular file (symbolic links
    are followed). It is stat-ed before it is opened, so a FIFO, device or socket is refused without being
    opened (opening a FIFO blocks until a writer comes; a device never ends), and fstat-ed once open, so
    nothing swapped in between is read. ``resolved``: ``path`` is a real path (no links), and a link put
    in its place since is not followed. Errors are one-line DataErrors starting with ``where`` (default the
    path) and naming ``what`` was expected."""
    where = str(path) if where is None else where
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{where}: no such file") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read {what} ({exc.strerror or exc})") from None
    expected = f"expected {'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{where}: {_not_regular(info.st_mode)}, {expected}")
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | (getattr(os, "O_NOFOLLOW", 0) if resolved else 0))
    except OSError as exc:
        raise DataError(f"{where}: cannot read {what} ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise DataError(f"{where}: {_not_regular(info.st_mode)}, {expected}")
    return os.fdopen(fd, "rb"), info


def read_at_most(fh, n: int, first: int = 1 << 20) -> bytes:
    """Up to ``n`` bytes from ``fh`` (fewer only at its end), read ``first`` bytes and then 16 MiB at a time:
    a buffer is never allocated for bytes that may not exist (``fh.read(n)`` allocates ``n`` up front)."""
    parts, left, size = [], n, max(first, 1)
    while left > 0:
        chunk = fh.read(min(left, size))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
        size = 1 << 24
    return b"".join(parts)


def read_bounded(path: Path, what: str, limit: int, where: Optional[str] = None) -> bytes:
    """The bytes of the regular file ``path``, refused (one line, naming the cap) if it has more than
    ``limit``: checked on its size first, and at most ``limit`` + 1 bytes are read (a file that grows, or
    one whose size the system does not report, cannot exhaust memory)."""
    where = str(path) if where is None else where
    fh, info = open_regular(path, what, where)
    too_large = f"{where}: larger than {size_text(limit)}, the most a {what} may have"
    with fh:
        if info.st_size > limit:
            raise DataError(f"{too_large} ({info.st_size} bytes)")
        try:
            raw = read_at_most(fh, limit + 1, first=info.st_size + 1)
        except OSError as exc:
            raise DataError(f"{where}: cannot read {what} ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise DataError(too_large)
    return raw


def read_csv(path: Path, what: str = "CSV file") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (stripped names) and the rows as (row number, stripped cells); blank lines are skipped
    (a line of empty cells such as ``,,`` is a row). Only a regular file of at most MAX_CSV_BYTES, with at
    most MAX_CSV_COLUMNS columns and MAX_CSV_CELLS cells, is read."""
    raw = read_bounded(path, what, MAX_CSV_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        hint = "; UTF-16? save it as UTF-8" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}{hint})") from None
    del raw
    if "\x00" in text:
        raise DataError(f"{path} row {text[:text.index(chr(0))].count(chr(10)) + 1}: NUL byte (binary file?)")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    header: Optional[list[str]] = None
    n_cells = 0
    try:
        for cells in reader:
            if len(cells) <= 1 and not "".join(cells).strip():
                continue
            if header is None:
                header = [c.strip() for c in cells]
                if len(header) > MAX_CSV_COLUMNS:
                    raise DataError(f"{path}: {len(header)} columns in the header, more than {MAX_CSV_COLUMNS}")
                continue
            n_cells += len(cells)
            if n_cells > MAX_CSV_CELLS:
                raise DataError(f"{path} row {reader.line_num}: more than {MAX_CSV_CELLS} cells in the file "
                                "(the table is held in memory); split it or select fewer columns")
            rows.append((reader.line_num, [c.strip() for c in cells]))
    except csv.Error as exc:
        raise DataError(f"{path} row {reader.line_num}: malformed CSV ({exc})") from None
    if header is None:
        raise DataError(f"{path}: empty file, expected a header row")
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{path}: column {i + 1} of the header has no name")
        if not name.isprintable():
            raise DataError(f"{path}: column {i + 1} of the header, {name!r}, contains a line break or "
                            "control character")
        if name in header[:i]:
            raise DataError(f"{path}: column {name!r} appears twice in the header")
    for row, cells in rows:
        if len(cells) != len(header):
            raise DataError(f"{path} row {row}: {len(cells)} fields, expected {len(header)} ({', '.join(header)})")
    if not rows:
        raise DataError(f"{path}: no examples (only a header)")
    return header, rows


def _is_number(cell: str) -> bool:
    """Whether float() reads ``cell`` as a number: "1.0", "1_0", "1e3", full-width digits (not "nan", "inf")."""
    if cell.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return True


def encode_labels(path: Path, rows: list[int], cells: list[str], column: str, classes=None,
                  num_classes=None) -> tuple[np.ndarray, list[str]]:
    """Integer labels and class names. Integer cells are used as they are (``num_classes`` bounds them);
    names are numbered in sorted order, or in the order of ``classes`` if given."""
    if num_classes is not None and num_classes > MAX_CLASSES:
        raise UserError(f"{path}: num_classes={num_classes} is too large (at most {MAX_CLASSES})")
    for row, cell in zip(rows, cells):
        if cell == "":
            raise DataError(f"{path} row {row}: missing {column}")
    if classes is not None:
        index = {name: i for i, name in enumerate(classes)}
        for row, cell in zip(rows, cells):
            if cell not in index:
                raise DataError(f"{path} row {row}: {column} {cell!r} is not one of the classes {', '.join(classes)}")
        return np.array([index[c] for c in cells], dtype=np.int64), list(classes)
    is_int = [bool(_INT.fullmatch(c)) for c in cells]
    for row, cell, integer in zip(rows, cells, is_int):
        if not integer and _is_number(cell):
            raise DataError(f"{path} row {row}: {column} {cell[:40]!r} is a number but not a plain integer; write "
                            "integer labels as 0, 1, 2, ... (digits only) or use class names that are not numbers")
    if any(is_int) and not all(is_int):
        first = is_int.index(True)
        bad = is_int.index(False)
        raise DataError(f"{path} row {rows[bad]}: {column} {cells[bad]!r} is not an integer, but row {rows[first]} "
                        f"is ({cells[first]!r}); use class names or integers throughout")
    if all(is_int):
        for row, cell in zip(rows, cells):
            if len(cell.lstrip("+-").lstrip("0")) > len(str(MAX_CLASSES)):  # before int(): no 10**5000
                raise DataError(f"{path} row {row}: {column} {cell[:40]!r} is too large "
                                f"(integer labels must be < {MAX_CLASSES})")
        values = [int(c) for c in cells]
        for row, v in zip(rows, values):
            if v < 0:
                raise DataError(f"{path} row {row}: {column} {v} is negative")
            if v >= MAX_CLASSES:
                raise DataError(f"{path} row {row}: {column} {v} is too large (integer labels must be < {MAX_CLASSES})")
            if num_classes is not None and v >= num_classes:
                raise DataError(f"{path} row {row}: {column} {v} out of range for num_classes={num_classes}")
        n = num_classes if num_classes is not None else max(values) + 1
        if num_classes is None:
            warn_missing_classes(f"{path} ({column})", n, np.array(values, dtype=np.int64), stacklevel=3)
        return np.array(values, dtype=np.int64), [str(i) for i in range(n)]
    names = sorted(set(cells))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[c] for c in cells], dtype=np.int64), names


def encode_splits(path: Path, rows: list[int], cells: list[str], column: str) -> np.ndarray:
    """Split cells (train / val / test) as indices into SPLIT_NAMES."""
    out = []
    for row, cell in zip(rows, cells):
        value = cell.lower()
        if value not in SPLIT_NAMES:
            raise DataError(f"{path} row {row}: {column} value {cell!r} is not one of train, val, test")
        out.append(SPLIT_NAMES.index(value))
    return np.array(out, dtype=np.int64)


def split_generator(seed, source: str) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"{source}: seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), zlib.crc32(source.encode())])


def stratified_split(y: np.ndarray, rng: np.random.Generator, val_fraction: float, test_fraction: float,
                     assign: Optional[np.ndarray] = None) -> np.ndarray:
    """Split indices (0 train, 1 val, 2 test) per class: round(n_c * fraction) examples of class c go to
    test and to val, drawn by ``rng``. With ``assign``, only entries equal to -1 are (re)assigned, and
    fractions apply to them (used to carve val out of train when a split column has no val rows)."""
    out = np.zeros(len(y), dtype=np.int64) if assign is None else assign.copy()
    free = np.ones(len(y), dtype=bool) if assign is None else assign == -1
    for c in np.unique(y[free]):
        idx = np.flatnonzero(free & (y == c))
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        out[idx] = 0
        out[idx[:n_test]] = 2
        out[idx[n_test:n_test + n_val]] = 1
    return out


def resolve_splits(path: Path, y: np.ndarray, split: Optional[np.ndarray], rng: np.random.Generator,
                   val_fraction: float, test_fraction: float) -> tuple[np.ndarray, str]:
    """The split of every example and a description of how it was made. Without a split column the
    split is seeded and stratified; with one lacking val rows, val is carved out of train (stratified)."""
    if split is None:
        out = stratified_split(y, rng, val_fraction, test_fraction)
        how = f"seeded stratified split: {val_fraction:g} val, {test_fraction:g} test per class"
    elif not (split == 1).any():
        assign = np.where(split == 0, -1, split)
        out = stratified_split(y, rng, val_fraction, 0.0, assign)
        how = f"split column; no val rows, so {val_fraction:g} of each train class drawn (seeded) as val"
    else:
        out, how = split, "split column"
    for i, name in enumerate(SPLIT_NAMES):
        if not (out == i).any():
            where = "the split column has no such rows" if split is not None else "too few examples"
            raise DataError(f"{path}: the {name} split is empty ({where})")
    return out, how


# ------------------------------------------------------------------------------------------ options


def parse_options(source: str, options: dict, defaults: dict) -> dict:
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise UserError(f"{source}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(defaults))}")
    return {**defaults, **options}


def option_bool(source: str, key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise UserError(f"{source}: option {key} must be true or false, got {value!r}")


def option_names(source: str, key: str, value) -> Optional[list[str]]:
    """A list of names from ``"a,b,c"`` or a JSON list of strings (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise UserError(f"{source}: option {key} must be comma-separated names, got {value!r}")
    if not names or any(not n for n in names):
        raise UserError(f"{source}: option {key} has an empty name in {value!r}")
    if len(set(names)) != len(names):
        raise UserError(f"{source}: option {key} names a column twice in {value!r}")
    return names


def option_fraction(source: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < 1) or math.isnan(value):
        raise UserError(f"{source}: option {key} must be a number in [0, 1), got {value!r}")
    return float(value)


def option_count(source: str, key: str, value, allow_none: bool = True) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{source}: option {key} must be an integer >= 1, got {value!r}")
    return value


def label_and_split_options(source: str, opts: dict, seed, kind: str):
    """The options every labelled file source shares, checked: ``(classes, num_classes, val_fraction,
    test_fraction, rng)``, with the seeded generator of the random split (``kind`` names the source type)."""
    classes = option_names(source, "classes", opts["classes"])
    num_classes = option_count(source, "num_classes", opts["num_classes"])
    val_f = option_fraction(source, "val_fraction", opts["val_fraction"])
    test_f = option_fraction(source, "test_fraction", opts["test_fraction"])
    if val_f + test_f >= 1:
        raise UserError(f"{source}: val_fraction + test_fraction must be < 1, got {val_f + test_f:g}")
    return classes, num_classes, val_f, test_f, split_generator(seed, kind)

