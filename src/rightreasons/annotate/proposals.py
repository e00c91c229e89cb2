"""Proposed masks for the folder being annotated: the folder ``rightreasons propose-masks`` writes (its
``proposals.csv`` says which rows have a proposal; without one, every row's ``mask`` cell is taken as
one), matched to the annotated folder's rows, and the reviewer's decisions (accepted / rejected), kept in
``PATH/.annotate/reviews.json``."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np

from ..errors import UserError
from ..files import atomic_write_text
from .store import FORMATS, MAX_MASK_BYTES, STATE_DIR, MaskStore, encode_mask_png, parse_table

DECISIONS = ("accepted", "rejected", "")
REVIEWS_FILE = f"{STATE_DIR}/reviews.json"


class Proposals:
    """The proposals in ``folder`` for the rows of ``store``. Rows are matched in order, as
    ``propose-masks`` writes them (``images/<name>`` or ``images/<row:06d>_<name>``), else by file name."""

    def __init__(self, folder: str | Path, store: MaskStore):
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: no such directory" if not folder.exists() else f"{folder}: not a directory")
        self.folder, self.real = folder, Path(os.path.realpath(folder))
        self.store = store
        ours = parse_table(folder / "labels.csv")
        report = folder / "proposals.csv"
        proposed: dict = {}
        if report.is_file():
            rep = parse_table(report, required=("file", "proposal"))
            for i, name in enumerate(rep.files):
                proposed[name] = rep.cell(i, "proposal")
        else:
            for i, name in enumerate(ours.files):
                proposed[name] = ours.cell(i, "mask")
        table = store.table()
        self.paths: dict = {}
        by_name: dict = {}
        for name in ours.files:
            by_name.setdefault(PurePosixPath(name).name, []).append(name)
        in_order = len(ours.files) == len(table.files)
        for j, file in enumerate(table.files):
            base = PurePosixPath(file.replace("\\", "/")).name
            theirs = None
            if in_order and PurePosixPath(ours.files[j]).name in (base, f"{j:06d}_{base}"):
                theirs = ours.files[j]
            elif len(by_name.get(base, ())) == 1:
                theirs = by_name[base][0]
            cell = proposed.get(theirs, "") if theirs is not None else ""
            if cell:
                real = Path(os.path.realpath(self.real / cell))
                if real.is_relative_to(self.real) and real.is_file():
                    self.paths[file] = real
        if not self.paths:
            raise UserError(f"{folder}: no proposal matches a row of {store.csv_path} (is it the folder "
                            "rightreasons propose-masks wrote from this one?)")
        self._lock = threading.Lock()
        self.reviews_path = store.root / REVIEWS_FILE
        self.reviews = self._read_reviews()

    def _read_reviews(self) -> dict:
        if not self.reviews_path.is_file():
            return {}
        try:
            raw = json.loads(self.reviews_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UserError(f"{self.reviews_path}: not readable JSON; move it away to start the review afresh") \
                from None
        if not isinstance(raw, dict):
            return {}
        return {k: v for k, v in raw.items() if isinstance(k, str) and v in DECISIONS[:2]}

    def mask(self, file: str) -> Optional[np.ndarray]:
        """The proposal of row ``file`` as a bool (H, W) at the image's size (resized nearest), or None."""
        from PIL import Image

        from ..data.csv_common import read_bounded

        path = self.paths.get(file)
        if path is None:
            return None
        data = read_bounded(path, "proposal mask", MAX_MASK_BYTES)
        w, h = self.store.image_size(file)
        try:
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                if im.width * im.height > 4 * w * h + 10**6:
                    raise UserError("far larger than the image")
                m = im.convert("L")
                if m.size != (w, h):
                    m = m.resize((w, h), Image.NEAREST)
                return np.asarray(m) >= 128
        except Exception as exc:
            raise UserError(f"{path}: cannot read proposal ({(str(exc).splitlines() or [type(exc).__name__])[0]})") \
                from None

    def png(self, file: str) -> Optional[bytes]:
        m = self.mask(file)
        return None if m is None else encode_mask_png(m)

    def review(self, file: str, decision: str) -> None:
        """Record ``decision`` (accepted, rejected, or empty: undecided) for the proposal of row ``file``."""
        if decision not in DECISIONS:
            raise UserError(f"decision must be one of accepted, rejected or empty, got {decision!r}"[:200])
        if file not in self.paths:
            raise UserError(f"{file!r} has no proposal"[:200])
        with self._lock:
            if decision:
                self.reviews[file] = decision
            else:
                self.reviews.pop(file, None)
            self.reviews_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.reviews_path, json.dumps(self.reviews, indent=1, sort_keys=True) + "\n")
