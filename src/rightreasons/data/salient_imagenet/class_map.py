"""Salient ImageNet's class map, ``MASKS/wordnet_dict.py``: class index -> wnid (or wnid -> index).

The file is data: it is parsed (``ast``), its one dict taken with ``ast.literal_eval``, and never imported or
run; anything but literals (a call, a name, a second statement) is an error naming the line. The dict is bare
(``{0: 'n01440764', ...}``) or assigned (``mapping = {...}``). Keys and values are class indices (integers
>= 0) and wnids (folder names: letters, digits, ``_``, ``-``), all in one direction.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import NamedTuple, Optional

from ...errors import DataError
from ..csv_common import read_bounded

WORDNET_FILE = "wordnet_dict.py"
#: the largest wordnet_dict.py read (the 1000-class file is about 20 kB)
MAX_DICT_BYTES = 1 << 22
LAYOUT = "wordnet_dict.py, <wnid>/image_names_map.csv and <wnid>/feature_<f>/ of the Salient ImageNet download"
_WNID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INDEX = re.compile(r"[0-9]{1,9}")


class WordNet(NamedTuple):
    """wordnet_dict.py: class index -> wnid, wnid -> index, and the file."""

    wnid: dict
    index: dict
    path: Path


def is_class_index(value) -> bool:
    """An ImageNet class index: an int (not a bool) >= 0."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_wnid(value) -> bool:
    """A WordNet id as a folder name: 1 to 64 letters, digits, ``_`` or ``-``."""
    return isinstance(value, str) and bool(_WNID.fullmatch(value))


def _statement(node: ast.stmt) -> str:
    return {ast.Expr: "an expression", ast.Assign: "an assignment", ast.Import: "an import",
            ast.ImportFrom: "an import"}.get(type(node), f"a {type(node).__name__} statement")


def _literal(path: Path, node: ast.expr):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        raise DataError(f"{path} line {getattr(node, 'lineno', '?')}: not a literal (a call, a name or an "
                        "operator); the file is read as data, never run") from None


def _entry_kind(key, value) -> Optional[bool]:
    """True for index -> wnid, False for wnid -> index, None for neither."""
    if is_class_index(key) and is_wnid(value):
        return True
    if is_wnid(key) and is_class_index(value):
        return False
    return None


def _dict_node(path: Path, tree: ast.Module) -> ast.Dict:
    """The file's one dict literal (a docstring may precede it); any other statement is an error."""
    found = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # a docstring
        value = None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            value = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            value = stmt.value
        elif isinstance(stmt, ast.Expr):
            value = stmt.value
        if not isinstance(value, ast.Dict):
            raise DataError(f"{path} line {stmt.lineno}: expected only a dict literal ({{...}} or name = {{...}}), "
                            f"found {_statement(stmt)}; the file is read as data, never run")
        if found is not None:
            raise DataError(f"{path} line {stmt.lineno}: a second dict (the first is on line {found.lineno})")
        found = value
    if found is None:
        raise DataError(f"{path}: no dict literal (expected {{0: 'n01440764', ...}} or name = {{...}})")
    return found


def read_wordnet(path: Path) -> WordNet:
    """The class table of ``wordnet_dict.py``: its one dict literal, parsed, never run."""
    if not os.path.lexists(path):
        raise DataError(f"{path}: no such file (expected {LAYOUT})")
    raw = read_bounded(path, "wordnet_dict.py", MAX_DICT_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        tree = ast.parse(text, filename=str(path), mode="exec")
    except SyntaxError as exc:
        raise DataError(f"{path} line {exc.lineno}: not a Python dict literal ({exc.msg})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise DataError(f"{path}: cannot parse it as a Python dict literal ({type(exc).__name__})") from None
    found = _dict_node(path, tree)
    wnid, index, lines, forward = {}, {}, {}, None
    for key_node, value_node in zip(found.keys, found.values):
        line = getattr(key_node or value_node, "lineno", found.lineno)
        if key_node is None:
            raise DataError(f"{path} line {line}: ** unpacking is not a literal entry")
        key, value = _literal(path, key_node), _literal(path, value_node)
        direction = _entry_kind(key, value)
        if direction is None:
            raise DataError(f"{path} line {line}: entry {key!r}: {value!r} is not class index -> wnid or wnid -> "
                            "class index (indices are integers >= 0; wnids letters, digits, _ and -)")
        if forward is not None and direction != forward:
            raise DataError(f"{path} line {line}: entry {key!r}: {value!r} maps the other way from the entries "
                            "before it")
        forward = direction
        i, w = (key, value) if forward else (value, key)
        if i in wnid:
            raise DataError(f"{path} line {line}: class index {i} already on line {lines[i]}")
        if w in index:
            raise DataError(f"{path} line {line}: wnid {w!r} already on line {lines[index[w]]}")
        wnid[i], index[w], lines[i] = w, i, line
    if not wnid:
        raise DataError(f"{path}: the dict is empty")
    return WordNet(wnid, index, path)
