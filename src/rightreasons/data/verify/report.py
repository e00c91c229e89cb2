"""What a verifier found in one copy of a dataset (:class:`Verification`: problems by kind, the files read,
the examples and counts of each split) and the report ``rightreasons data verify`` prints of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import DataError
from ..csv_common import SPLIT_NAMES
from .images import Bad, image_size

#: problem kinds, in the order a report lists them
KINDS = ("missing", "unreadable", "undecodable", "mask size", "malformed", "extra", "changed", "split", "options",
         "loader")
#: the most problems of one kind a report names
SAMPLE = 10


@dataclass
class Problem:
    kind: str
    where: str  #: the file, folder or index line at fault
    detail: str

    def line(self) -> str:
        return f"{self.where}: {self.detail}"


@dataclass
class Verification:
    """What a verifier found in one copy of a dataset: see the package docstring."""

    name: str
    root: Path
    seed: int = 0
    options: dict = field(default_factory=dict)
    decode: bool = False
    #: the resolved settings that decide which files are read and the splits (layout, split_seed, fold, ...)
    settings: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    #: manifest key (a path relative to root, or "@LABEL/..." under an extra root) -> path of every file read
    files: dict = field(default_factory=dict)
    #: split -> the image keys of its examples, in the loader's order
    splits: dict = field(default_factory=lambda: {s: [] for s in SPLIT_NAMES})
    #: split -> group or class name -> examples
    counts: dict = field(default_factory=dict)
    count_by: str = "group"
    #: extra roots of files outside ``root`` (e.g. CUB segmentations elsewhere): label -> directory
    roots: dict = field(default_factory=dict)
    checked: int = 0  #: image files whose header (or, with decode, pixels) were checked
    loaded: Optional[bool] = None  #: None: the loader did not run
    notes: list = field(default_factory=list)
    compared: Optional[str] = None  #: the manifest compared against

    # ------------------------------------------------------------------------------------------ recording

    def problem(self, kind: str, where, detail: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        self.problems.append(Problem(kind, str(where), detail))

    def data_error(self, kind: str, exc: DataError, where) -> None:
        """Record a loader DataError, its leading ``where: `` taken as the place."""
        message, where = str(exc), str(where)
        if message.startswith(where + ": "):
            self.problem(kind, where, message[len(where) + 2:])
        else:
            place, sep, rest = message.partition(": ")
            self.problem(kind, place if sep else where, rest if sep else message)

    def key(self, path) -> str:
        """The manifest key of ``path``: relative to root (POSIX separators), or ``@LABEL/rel`` under an extra
        root."""
        path = Path(path)
        for label, base in [("", self.root), *self.roots.items()]:
            try:
                rel = path.relative_to(base).as_posix()
            except ValueError:
                continue
            return rel if not label else f"@{label}/{rel}"
        return path.as_posix()

    def path_of(self, key: str) -> Path:
        """The path of a manifest key (the inverse of :meth:`key`)."""
        label, sep, rel = key[1:].partition("/") if key.startswith("@") else ("", "", key)
        return self.roots[label] / rel if sep and label in self.roots else self.root / key

    def add_file(self, path) -> str:
        key = self.key(path)
        self.files[key] = Path(path)
        return key

    def check_image(self, path, where: Optional[str] = None, mode: str = "RGB") -> Optional[tuple[int, int]]:
        """(H, W) of the image file ``path`` (recorded as read), or None after recording why it cannot be read."""
        where = str(path) if where is None else where
        self.add_file(path)
        self.checked += 1
        try:
            return image_size(Path(path), where, self.decode, mode)
        except Bad as bad:
            self.problem(bad.kind, where, bad.detail)
            return None

    def set_splits(self, keys: list, split: np.ndarray, labels: np.ndarray, names: list) -> None:
        """The examples' image ``keys``, split index (0 train, 1 val, 2 test) and group or class index."""
        split, labels = np.asarray(split, dtype=np.int64), np.asarray(labels, dtype=np.int64)
        self.splits = {s: [k for k, j in zip(keys, split) if j == i] for i, s in enumerate(SPLIT_NAMES)}
        self.counts = {s: {name: int(((split == i) & (labels == c)).sum()) for c, name in enumerate(names)}
                       for i, s in enumerate(SPLIT_NAMES)}

    # ------------------------------------------------------------------------------------------ reading

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.root}"

    def by_kind(self) -> dict:
        out: dict = {}
        for p in self.problems:
            out.setdefault(p.kind, []).append(p)
        return {k: out[k] for k in KINDS if k in out}

    def summary(self) -> str:
        """One line: complete (and loads), or how many problems of which kinds."""
        sizes = " / ".join(f"{len(self.splits[s])} {s}" for s in SPLIT_NAMES)
        if self.ok and not self.files:
            return f"{self.spec}: loads (checked by its loader alone: {self.name} has no verifier of its own)"
        if self.ok:
            loads = {True: ", loads", None: " (loader not run: pass --decode)", False: ""}[self.loaded]
            return f"{self.spec}: complete: {len(self.files)} files, {sizes}{loads}"
        kinds = ", ".join(f"{len(v)} {k}" for k, v in self.by_kind().items())
        return f"{self.spec}: {len(self.problems)} problem(s) ({kinds}); {len(self.files)} files, {sizes}"

    def report_lines(self) -> list[str]:
        """The report: settings, files checked, counts per split, problems (at most SAMPLE named per kind)."""
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        lines = [f"{self.spec}" + (f" ({settings})" if settings else "")]
        how = "decoded" if self.decode else "header checked (pass --decode to decode them)"
        lines.append(f"files read by the loader: {len(self.files)}; {self.checked} images, each {how}")
        if self.compared:
            lines.append(f"compared with the manifest {self.compared} (sizes and sha256)")
        lines += count_table(self.counts, self.count_by)
        lines += [f"note: {n}" for n in self.notes]
        for kind, items in self.by_kind().items():
            lines.append(f"{kind}: {len(items)}" + (f" (the first {SAMPLE} named)" if len(items) > SAMPLE else ""))
            lines += [f"  {p.line()}" for p in items[:SAMPLE]]
        if self.loaded:
            lines.append("loader: loads" + (", with the splits above" if self.files else ""))
        return lines


def count_table(counts: dict, count_by: str) -> list[str]:
    """Counts per split as text lines: a column per group or class (a summary when there are many)."""
    if not counts:
        return ["counts: none (the index could not be read)"]
    names = list(next(iter(counts.values())))
    plural = {"class": "classes"}.get(count_by, count_by + "s")
    if len(names) > 6:
        lines = [f"counts per split ({len(names)} {plural}; total, {plural} present, examples per {count_by} "
                 "min-max):"]
        for s, row in counts.items():
            values = list(row.values())
            present = sum(1 for n in values if n)
            lines.append(f"  {s:<5} {sum(values):>7}  {present} {plural}, {min(values)}-{max(values)}")
        return lines
    width = max([7, *(len(n) for n in names)])
    lines = [f"counts per split and {count_by}:", "  " + f"{'split':<5} " + " ".join(f"{n:>{width}}" for n in names)
             + f" {'total':>7}"]
    for s, row in counts.items():
        lines.append("  " + f"{s:<5} " + " ".join(f"{row[n]:>{width}}" for n in names) + f" {sum(row.values()):>7}")
    return lines
