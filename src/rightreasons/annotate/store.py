"""The masks and ``labels.csv`` of an image folder, read and written for the annotation page.

Every save writes the mask PNG and, when its cell changes, ``labels.csv`` atomically (temporary file,
fsync, rename), after copying what it replaces into ``PATH/.annotate/history/``: the mask as
``<mask path>.<n>.png`` (its suffix kept), labels.csv as ``labels.<n>.csv``, and a record ``<n>.json``
saying what save ``n`` changed. :meth:`MaskStore.undo` reverts the latest save of an example that is not
undone yet (itself a recorded change: what it replaces is kept too).

A row's *version* is a hash of its ``mask`` cell and of the mask file's bytes. A save or undo names the
version it was based on; when the row has changed since (another tab, another program), it is refused
with :class:`ConflictError`. Saves to other rows do not conflict: labels.csv is read afresh and only
the saved row's cell changes, every other column and row kept as it was.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np

from ..errors import UserError
from ..files import atomic_write, write_synced

try:  # advisory lock between processes annotating the same folder (POSIX)
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LABELS_FILE = "labels.csv"
STATE_DIR = ".annotate"
HISTORY_DIR = f"{STATE_DIR}/history"
#: the most bytes a mask PNG sent by the page, or a mask file read, may have
MAX_MASK_BYTES = 32 * 2**20
#: the most bytes of an image file served
MAX_IMAGE_BYTES = 256 * 2**20
MAX_PIXELS = 50_000_000
#: the image decoders used (never one that runs a program, such as EPS)
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
_RECORD = re.compile(r"^([0-9]{1,12})\.json$")


class ConflictError(UserError):
    """A save or undo based on a version of the row that is no longer the current one."""


class NotFoundError(UserError):
    """A file that is not a row of the folder, or a save with nothing to undo."""


@dataclass
class Table:
    """labels.csv as read: raw cells (kept byte for byte on rewrite) and the stripped values."""

    data: bytes
    header: list[str]
    raw_header: list[str]
    raw_rows: list[list[str]]
    row_numbers: list[int]
    files: list[str]
    index: dict
    col: dict
    bom: bool
    newline: str
    signature: tuple

    def cell(self, i: int, name: str) -> str:
        return self.raw_rows[i][self.col[name]].strip() if name in self.col else ""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _version(cell: str, content: str) -> str:
    return hashlib.sha256(f"{cell}\0{content}".encode()).hexdigest()[:32]


def _pil():
    from PIL import Image

    return Image


def _signature(path: Path) -> tuple:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


def parse_table(path: Path, required=("file", "label")) -> Table:
    """labels.csv of a folder (or another table with a ``file`` column), validated: the ``required``
    columns, no file listed twice."""
    from ..data.csv_common import read_bounded, read_csv

    header, _ = read_csv(path, "labels CSV")  # the checks and one-line errors of the folder loader
    for name in required:
        if name not in header:
            raise UserError(f"{path}: missing column {name!r} (header: {', '.join(header)})")
    signature = _signature(path)
    data = read_bounded(path, "labels CSV", 1 << 30)
    text = data.decode("utf-8-sig")
    first = text.split("\n", 1)[0]
    newline = "\r\n" if first.endswith("\r") else "\n"
    raw: list[list[str]] = []
    numbers: list[int] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    for cells in reader:  # the rows read_csv keeps: blank lines skipped
        if len(cells) <= 1 and not "".join(cells).strip():
            continue
        raw.append(cells)
        numbers.append(reader.line_num)
    raw_header, raw_rows, numbers = raw[0], raw[1:], numbers[1:]
    col = {name: i for i, name in enumerate(header)}
    files = [r[col["file"]].strip() for r in raw_rows]
    index: dict = {}
    for i, name in enumerate(files):
        if not name:
            raise UserError(f"{path} row {numbers[i]}: missing file")
        if name in index:
            raise UserError(f"{path} row {numbers[i]}: file {name!r} already listed in row {numbers[index[name]]}")
        index[name] = i
    return Table(data, header, raw_header, raw_rows, numbers, files, index, col, data.startswith(b"\xef\xbb\xbf"),
                 newline, signature)


def table_bytes(table: Table, header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=table.newline)
    writer.writerow(header)
    writer.writerows(rows)
    return (b"\xef\xbb\xbf" if table.bom else b"") + buf.getvalue().encode("utf-8")


def decode_mask_png(data: bytes, size_wh: tuple[int, int], where: str) -> np.ndarray:
    """The bool (H, W) mask of a PNG sent by the page: exactly ``size_wh`` pixels, every value 0 or 255
    (gray, or RGB with equal channels, fully opaque); anything else is a one-line UserError."""
    Image = _pil()
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise UserError(f"{where}: no PNG data")
    if len(data) > MAX_MASK_BYTES:
        raise UserError(f"{where}: PNG of {len(data)} bytes, more than {MAX_MASK_BYTES}")
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
            if im.size != tuple(size_wh):  # checked before decoding: no decompression bomb
                raise UserError(f"{where}: mask is {im.size[0]}x{im.size[1]} pixels (width x height) but the "
                                f"image is {size_wh[0]}x{size_wh[1]}")
            im.load()
            mode = im.mode
            a = np.asarray(im)
    except UserError:
        raise
    except Exception as exc:  # Pillow raises many types on corrupt input
        raise UserError(f"{where}: not a readable PNG ({(str(exc).splitlines() or [type(exc).__name__])[0]})") \
            from None
    if mode == "1":
        return a.astype(bool)
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise UserError(f"{where}: PNG mode {mode} not accepted; send gray, RGB or RGBA")
    if a.dtype != np.uint8:
        raise UserError(f"{where}: PNG must have 8 bits per channel")
    if mode == "RGBA":  # what the page sends: one comparison per pixel on 32-bit words (opaque black or white)
        words = np.ascontiguousarray(a).view(np.uint32)[..., 0]
        white = words == np.frombuffer(b"\xff\xff\xff\xff", np.uint32)[0]
        if np.count_nonzero(white | (words == np.frombuffer(b"\x00\x00\x00\xff", np.uint32)[0])) == words.size:
            return white
    if mode in ("LA", "RGBA"):
        if (a[..., -1] != 255).any():
            raise UserError(f"{where}: mask PNG has transparent pixels; send an opaque mask")
        a = a[..., :-1]
    if a.ndim == 3:
        if (a != a[..., :1]).any():
            raise UserError(f"{where}: mask PNG has coloured pixels; white (255) = ignore, black (0) = keep")
        a = a[..., 0]
    if ((a != 0) & (a != 255)).any():
        r, c = np.argwhere((a != 0) & (a != 255))[0]
        raise UserError(f"{where}: mask PNG has a value other than 0 and 255 ({int(a[r, c])} at row {r}, column {c})")
    return a == 255


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A bool (H, W) mask as a grayscale PNG, white = 1 = ignore."""
    Image = _pil()
    buf = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _relative(root_real: Path, real: Path) -> str:
    return real.relative_to(root_real).as_posix()


class MaskStore:
    """The masks and labels.csv of the image folder ``root``; safe to use from several threads (and,
    on POSIX, from several processes: writes hold a lock on ``root/.annotate/lock``)."""

    def __init__(self, root: str | Path):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root}: no such directory" if not root.exists() else f"{root}: not a directory")
        self.root = root
        self.root_real = Path(os.path.realpath(root))
        self.csv_path = root / LABELS_FILE
        if not os.path.lexists(self.csv_path):
            raise UserError(f"{root}: no {LABELS_FILE} (expected a header file,label[,group][,split][,mask])")
        if not Path(os.path.realpath(self.csv_path)).is_relative_to(self.root_real):
            raise UserError(f"{self.csv_path}: is a link to a file outside the folder; annotate writes only inside it")
        state = Path(os.path.realpath(root / STATE_DIR))
        if not state.is_relative_to(self.root_real) or state == self.root_real:
            raise UserError(f"{root / STATE_DIR}: leads outside the folder; annotate keeps its history inside it")
        self._lock = threading.RLock()
        self._table: Optional[Table] = None
        self._sizes: dict = {}
        self._records: dict = {}
        self.table()

    # ----------------------------------------------------------------------------------------- reading

    def table(self) -> Table:
        """labels.csv, re-read when it changed on disk."""
        with self._lock:
            try:
                signature = _signature(self.csv_path)
            except OSError as exc:
                raise UserError(f"{self.csv_path}: cannot read ({exc.strerror or exc})") from None
            if self._table is None or self._table.signature != signature:
                self._table = parse_table(self.csv_path)
            return self._table

    def _row(self, table: Table, file) -> int:
        if not isinstance(file, str) or file not in table.index:
            shown = file if isinstance(file, str) and len(file) < 200 and file.isprintable() else "that file"
            raise NotFoundError(f"{shown!r} is not a row of {self.csv_path}")
        return table.index[file]

    def _inside(self, table: Table, i: int, name: str, column: str) -> Path:
        real = Path(os.path.realpath(self.root_real / name))
        if not real.is_relative_to(self.root_real) or real == self.root_real:
            raise UserError(f"{self.csv_path} row {table.row_numbers[i]}, column {column!r}: {name!r} is outside "
                            f"the folder; annotate reads and writes only inside it")
        return real

    def image_path(self, file: str) -> Path:
        """The real path of the image of row ``file`` (refused when it lies outside the folder)."""
        table = self.table()
        i = self._row(table, file)
        return self._inside(table, i, table.files[i], "file")

    def image_size(self, file: str) -> tuple[int, int]:
        """(width, height) of the image of row ``file``, read from its header."""
        path = self.image_path(file)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise UserError(f"{self.root / file}: cannot read image ({exc.strerror or exc})") from None
        key = (str(path), st.st_mtime_ns, st.st_size)
        size = self._sizes.get(key)
        if size is None:
            Image = _pil()
            try:
                with Image.open(path, formats=FORMATS) as im:
                    size = im.size
            except Exception as exc:
                raise UserError(f"{self.root / file}: cannot read image "
                                f"({(str(exc).splitlines() or [type(exc).__name__])[0]})") from None
            if size[0] * size[1] > MAX_PIXELS:
                raise UserError(f"{self.root / file}: image has more than {MAX_PIXELS} pixels")
            self._sizes[key] = size
        return size

    def image_bytes(self, file: str) -> tuple[bytes, str]:
        """(bytes, content type) of the image of row ``file`` as a browser shows it pixel for pixel as the
        folder loader reads it: PNG, GIF, BMP, WebP and JPEG files as they are, others (TIFF, JPEGs with an
        EXIF rotation, which browsers would apply) re-encoded as PNG."""
        from ..data.csv_common import read_bounded

        path = self.image_path(file)
        self.image_size(file)
        data = read_bounded(path, "image file", MAX_IMAGE_BYTES, str(self.root / file))
        Image = _pil()
        types = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "BMP": "image/bmp",
                 "WEBP": "image/webp"}
        try:
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                kind = im.format
                rotated = kind == "JPEG" and im.getexif().get(0x0112, 1) not in (1, None)
                if kind in types and not rotated:
                    return data, types[kind]
                buf = io.BytesIO()
                im.convert("RGBA" if "A" in im.mode else "RGB").save(buf, format="PNG")
                return buf.getvalue(), "image/png"
        except Exception as exc:
            raise UserError(f"{self.root / file}: cannot read image "
                            f"({(str(exc).splitlines() or [type(exc).__name__])[0]})") from None

    def _mask_state(self, table: Table, i: int) -> tuple[str, Optional[Path], Optional[bytes], str]:
        """(cell, real path or None, bytes or None, content key) of the mask of row ``i``."""
        from ..data.csv_common import read_bounded

        cell = table.cell(i, "mask")
        if not cell:
            return cell, None, None, "none"
        real = Path(os.path.realpath(self.root_real / cell))
        if not real.is_relative_to(self.root_real):
            return cell, None, None, "outside"
        if not os.path.lexists(real):
            return cell, real, None, "missing"
        data = read_bounded(real, "mask file", MAX_MASK_BYTES, str(self.root / cell))
        return cell, real, data, _sha(data)

    def version(self, file: str) -> str:
        """The current version of row ``file`` (its mask cell and the mask's bytes)."""
        with self._lock:
            table = self.table()
            i = self._row(table, file)
            cell, _, _, content = self._mask_state(table, i)
            return _version(cell, content)

    def read_mask(self, file: str) -> dict:
        """The mask of row ``file``: ``png`` (grayscale, the image's size, 0/255), ``version``, ``state``
        (``saved``, ``none``: no mask cell, ``missing``: the file is absent) and ``note`` (how a mask that
        was not binary or not the image's size was shown, else empty)."""
        Image = _pil()
        with self._lock:
            table = self.table()
            i = self._row(table, file)
            cell, _, data, content = self._mask_state(table, i)
            if content == "outside":
                self._inside(table, i, cell, "mask")
            version = _version(cell, content)
        w, h = self.image_size(file)
        note = ""
        if data is None:
            return {"png": encode_mask_png(np.zeros((h, w), bool)), "version": version,
                    "state": "none" if content == "none" else "missing", "note": note, "mask": cell}
        try:
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise UserError("too many pixels")
                im.load()
                m = np.asarray(im.convert("L"))
        except Exception as exc:
            raise UserError(f"{self.root / cell}: cannot read mask "
                            f"({(str(exc).splitlines() or [type(exc).__name__])[0]})") from None
        if m.shape != (h, w):
            note = f"the mask file is {m.shape[1]}x{m.shape[0]}, the image {w}x{h}: shown resized; saving replaces it"
            m = np.asarray(Image.fromarray(m).resize((w, h), Image.NEAREST))
        elif ((m > 25) & (m < 230)).any():
            note = "the mask file has gray values: shown thresholded at 128; saving replaces it"
        return {"png": encode_mask_png(m >= 128), "version": version, "state": "saved", "note": note, "mask": cell}

    def mask_array(self, file: str) -> Optional[np.ndarray]:
        """The bool (H, W) mask of row ``file`` as saved (white = 1), or None without one."""
        Image = _pil()
        got = self.read_mask(file)
        if got["state"] != "saved":
            return None
        with Image.open(io.BytesIO(got["png"])) as im:
            return np.asarray(im) >= 128

    def rows(self) -> list[dict]:
        """Per row of labels.csv: file, label, split (the column's, else empty), whether it has a mask."""
        table = self.table()
        out = []
        for i, name in enumerate(table.files):
            out.append({"file": name, "label": table.cell(i, "label"), "split": table.cell(i, "split"),
                        "mask": bool(table.cell(i, "mask") or table.cell(i, "boxes"))})
        return out

    # ----------------------------------------------------------------------------------------- history

    @contextmanager
    def _writing(self):
        """The thread lock and the folder's lock file, held while a change is made."""
        with self._lock:
            history = self.root / HISTORY_DIR
            try:
                history.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{history}: cannot create ({exc.strerror or exc})") from None
            if fcntl is None:
                yield
                return
            fd = os.open(self.root / STATE_DIR / "lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def records(self) -> list[dict]:
        """Every recorded change (saves and undos), oldest first."""
        history = self.root / HISTORY_DIR
        with self._lock:
            try:
                names = os.listdir(history)
            except FileNotFoundError:
                return []
            found = []
            for name in names:
                match = _RECORD.match(name)
                if not match:
                    continue
                n = int(match.group(1))
                if n not in self._records:  # records are written once and never changed: read each once
                    try:
                        self._records[n] = json.loads((history / name).read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        continue
                found.append(n)
            return [self._records[n] for n in sorted(found)]

    def _undoable(self, file: str, records: list[dict]) -> list[dict]:
        """The saves of ``file`` not undone yet, oldest first."""
        undone = {r.get("undoes") for r in records if r.get("action") == "undo"}
        return [r for r in records if r.get("action") == "save" and r.get("file") == file and r["n"] not in undone]

    def undo_count(self, file: str) -> int:
        """How many saves of row ``file`` can be undone."""
        return len(self._undoable(file, self.records()))

    def _next(self, records: list[dict]) -> int:
        return (records[-1]["n"] + 1) if records else 1

    def _keep(self, n: int, real: Path, data: bytes) -> str:
        """Copy ``data`` (the file at ``real``, about to be replaced) into the history as save ``n``'s."""
        rel = PurePosixPath(_relative(self.root_real, real))
        kept = PurePosixPath(HISTORY_DIR) / rel.parent / f"{rel.stem}.{n}{rel.suffix or '.png'}"
        self._write_new(self.root / kept, data)
        return kept.as_posix()

    @staticmethod
    def _write_new(path: Path, data: bytes) -> None:
        """Write a history file; one already there (left by a save that crashed before its record was
        written) is moved aside, never overwritten."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(path):
            os.replace(path, path.with_name(f"{path.name}.{time.time_ns()}.kept"))
        write_synced(path, data, exclusive=True)

    def _new_mask_name(self, table: Table, i: int) -> str:
        """A mask path for row ``i`` that no row uses and no file occupies: ``masks/<file>.png`` (without
        a leading ``images/``)."""
        parts = [p for p in PurePosixPath(table.files[i].replace("\\", "/")).parts if p not in ("/", "..", ".")]
        if parts and parts[0] == "images" and len(parts) > 1:
            parts = parts[1:]
        base = PurePosixPath("masks", *parts).with_suffix(".png") if parts else PurePosixPath("masks/mask.png")
        used = {os.path.normpath(c) for c in table.files}
        used |= {os.path.normpath(table.cell(j, "mask")) for j in range(len(table.files)) if table.cell(j, "mask")}
        candidate, k = base, 1
        while os.path.normpath(str(candidate)) in used or os.path.lexists(self.root / candidate):
            k += 1
            candidate = base.with_name(f"{base.stem}-{k}.png")
        return candidate.as_posix()

    def _write_row(self, n: int, table: Table, i: int, cell: str) -> Optional[str]:
        """Set the mask cell of row ``i`` (adding the column when missing) and rewrite labels.csv,
        keeping the old one as ``labels.<n>.csv``; returns the kept copy's path (None: nothing changed)."""
        if table.cell(i, "mask") == cell:
            return None
        header = list(table.raw_header)
        rows = [list(r) for r in table.raw_rows]
        if "mask" not in table.col:
            header.append("mask")
            for r in rows:
                r.append("")
            position = len(header) - 1
        else:
            position = table.col["mask"]
        rows[i][position] = cell
        kept = f"{HISTORY_DIR}/labels.{n}.csv"
        self._write_new(self.root / kept, table.data)
        new = table_bytes(table, header, rows)
        atomic_write(self.csv_path, lambda tmp: Path(tmp).write_bytes(new))
        return kept

    def _record(self, n: int, record: dict) -> None:
        record = {"n": n, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
        text = json.dumps(record, indent=1) + "\n"
        atomic_write(self.root / HISTORY_DIR / f"{n}.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        self._records[n] = record

    # ----------------------------------------------------------------------------------------- writing

    def save(self, file: str, png: bytes, version: str) -> dict:
        """Save the mask PNG ``png`` (the image's size, 0/255) for row ``file``, refused with
        :class:`ConflictError` unless the row is still at ``version``. Returns the new ``version``, the
        ``mask`` path written, the record number ``saved`` and ``undo`` (saves of the row that can be undone)."""
        where = f"mask for {file!r}" if isinstance(file, str) and len(file) < 200 else "mask"
        self.image_path(file)  # a row, inside the folder
        mask = decode_mask_png(png, self.image_size(file), where)
        data = encode_mask_png(mask)
        try:
            with self._writing():
                table = self.table()
                i = self._row(table, file)
                cell, real, old, content = self._mask_state(table, i)
                if _version(cell, content) != version:
                    raise ConflictError(f"the mask of {file!r} was changed since this page loaded it (in another tab "
                                        "or program); reload to see the current mask")
                if content == "outside":
                    self._inside(table, i, cell, "mask")
                shared = bool(cell) and any(os.path.normpath(table.cell(j, "mask")) == os.path.normpath(cell)
                                            for j in range(len(table.files)) if j != i)
                new_cell = cell if cell and not shared else self._new_mask_name(table, i)
                target = Path(os.path.realpath(self.root_real / new_cell))
                if not target.is_relative_to(self.root_real):
                    raise UserError(f"{self.root / new_cell}: leads outside the folder; not written")
                if os.path.lexists(target) and not target.is_file():
                    raise UserError(f"{self.root / new_cell}: exists and is not a file; not written")
                records = self.records()
                n = self._next(records)
                before = self._keep(n, target, old) if old is not None and new_cell == cell else None
                atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))
                labels_before = self._write_row(n, table, i, new_cell)
                self._record(n, {"action": "save", "file": file, "mask": new_cell, "cell_before": cell,
                                 "cell_after": new_cell, "mask_before": before,
                                 "created": old is None or new_cell != cell, "labels_before": labels_before,
                                 "sha_after": _sha(data)})
                undo = self.undo_count(file)
        except OSError as exc:
            raise UserError(f"{self.root}: cannot save the mask of {file!r} ({exc.strerror or exc})") from None
        return {"version": _version(new_cell, _sha(data)), "mask": new_cell, "saved": n, "undo": undo}

    def undo(self, file: str, version: str) -> dict:
        """Revert the latest save of row ``file`` not undone yet (the mask it replaced back, or removed if
        it created it; the cell as it was), refused with :class:`ConflictError` unless the row is at
        ``version`` and still as that save left it. What the undo replaces is kept in the history."""
        try:
            with self._writing():
                table = self.table()
                i = self._row(table, file)
                cell, real, current, content = self._mask_state(table, i)
                if _version(cell, content) != version:
                    raise ConflictError(f"the mask of {file!r} was changed since this page loaded it (in another tab "
                                        "or program); reload to see the current mask")
                records = self.records()
                saves = self._undoable(file, records)
                if not saves:
                    raise NotFoundError(f"no saved change of {file!r} to undo")
                last = saves[-1]
                if cell != last["cell_after"] or content != last["sha_after"]:
                    raise ConflictError(f"the mask of {file!r} was changed outside this page after save "
                                        f"{last['n']}; not undone")
                n = self._next(records)
                kept = self._keep(n, real, current) if current is not None else None
                if last.get("mask_before"):
                    restored = (self.root / last["mask_before"]).read_bytes()
                    atomic_write(real, lambda tmp: Path(tmp).write_bytes(restored))
                    new_content = _sha(restored)
                elif last.get("created") and real is not None:
                    os.unlink(real)
                    new_content = "none" if not last["cell_before"] else "missing"
                else:
                    new_content = content
                labels_before = self._write_row(n, table, i, last["cell_before"])
                new_cell = last["cell_before"]
                if new_cell and not last.get("mask_before"):
                    old_real = Path(os.path.realpath(self.root_real / new_cell))
                    new_content = (_sha((old_real).read_bytes()) if old_real.is_relative_to(self.root_real)
                                   and old_real.is_file() else "missing")
                self._record(n, {"action": "undo", "undoes": last["n"], "file": file, "mask": last["mask"],
                                 "cell_before": cell, "cell_after": new_cell, "mask_before": kept,
                                 "labels_before": labels_before})
                undo = self.undo_count(file)
        except OSError as exc:
            raise UserError(f"{self.root}: cannot undo the save of {file!r} ({exc.strerror or exc})") from None
        return {"version": _version(new_cell, new_content), "mask": new_cell, "undone": last["n"], "undo": undo}
