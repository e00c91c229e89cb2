"""``rightreasons data verify``: check a downloaded copy of a published dataset file by file, collecting every
problem (the loaders stop at the first one).

A verifier walks the files the loader reads, in the loader's order and by the loader's rules (it reuses
the loader's own parsing functions), and records

- the examples of each split and their counts per group or class, as the loader builds them;
- every file the loader reads (index files, images, masks), for manifests (``data/manifest.py``);
- problems, by kind: ``missing`` files or folders, ``unreadable`` ones (not a regular file, no
  permission), ``undecodable`` images (the header is read for every image, and JPEG / PNG files must end
  with their end marker; ``decode=True`` decodes every image as the loader does), ``mask size`` (a mask
  whose size is not its image's), ``malformed`` index entries, and, from a manifest comparison, ``extra``,
  ``changed``, ``split`` and ``options``.

When no problem is found the loader itself runs (``stream=true``: every file opened, nothing decoded) and
its splits must hold the same images as the verifier's (``loader`` problems otherwise). A loader whose
``stream=true`` path decodes images (plant computes its training mean) runs only with ``decode=True``.

Verifiers are registered per dataset prefix with :func:`register_verifier`; a loader module of another
``PREFIX:PATH`` dataset may instead define ``verify_files(v: Verification) -> None``. Without either, the
loader runs and its first error is the one problem reported.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import DataError, UserError
from .csv_common import SPLIT_NAMES, open_regular, parse_options, read_bounded

#: problem kinds, in the order a report lists them
KINDS = ("missing", "unreadable", "undecodable", "mask size", "malformed", "extra", "changed", "split", "options",
         "loader")
#: the most problems of one kind a report names
SAMPLE = 10
#: options that never change what is read or how it is split (left out of manifests and comparisons)
RUNTIME_OPTIONS = ("stream", "workers", "cache")
#: options naming a directory of this machine (left out of manifests; their files are keyed by a root label)
PATH_OPTIONS = ("segmentations",)
#: bytes at the end of a JPEG or PNG file searched for its end marker
TAIL_BYTES = 4096


@dataclass
class Problem:
    kind: str
    where: str  #: the file, folder or index line at fault
    detail: str

    def line(self) -> str:
        return f"{self.where}: {self.detail}"


@dataclass
class Verification:
    """What a verifier found in one copy of a dataset (see the module docstring)."""

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


# ------------------------------------------------------------------------------------------ image files


class Bad(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _strip(message: str, where: str) -> str:
    return message[len(where) + 2:] if message.startswith(where + ": ") else message


def image_size(path: Path, where: str, decode: bool = False, mode: str = "RGB") -> tuple[int, int]:
    """(H, W) of an image file from its header, which must name a format the loaders read (folder.FORMATS)
    and, for JPEG and PNG, be followed by the format's end marker near the end of the file (a truncated
    copy lacks it). ``decode``: decoded as the loaders decode (``folder.read_image``). Raises :class:`Bad`."""
    from .folder import FORMATS, MAX_PIXELS, _pil, read_image

    if not os.path.lexists(path):
        raise Bad("missing", "no such file")
    try:
        fh, info = open_regular(path, "image file", where)
    except DataError as exc:
        raise Bad("missing" if not os.path.exists(path) else "unreadable", _strip(str(exc), where)) from None
    if decode:
        fh.close()
        try:
            return read_image(path, where, mode).shape[:2]
        except DataError as exc:
            raise Bad("undecodable", _strip(str(exc), where)) from None
    Image = _pil()
    with fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(fh, formats=FORMATS) as im:
                    fmt, (w, h) = im.format, im.size
        except Image.UnidentifiedImageError:
            raise Bad("undecodable", f"not an image in one of {', '.join(FORMATS)}") from None
        except Exception as exc:  # Pillow raises many types on a corrupt header
            raise Bad("undecodable", f"cannot read the image header ({(str(exc).splitlines() or [''])[0]})") from None
        if w * h > MAX_PIXELS:
            raise Bad("undecodable", f"image is {h}x{w}, more than {MAX_PIXELS} pixels")
        if w * h == 0:
            raise Bad("undecodable", "image has no pixels")
        marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(fmt)
        if marker is not None:
            try:
                fh.seek(max(0, info.st_size - TAIL_BYTES))
                tail = fh.read(TAIL_BYTES)
            except OSError as exc:
                raise Bad("unreadable", f"cannot read ({exc.strerror or exc})") from None
            if marker not in tail:
                raise Bad("undecodable", f"truncated {fmt} (no end marker in its last {TAIL_BYTES} bytes)")
    return h, w


# ------------------------------------------------------------------------------------------ registry

VERIFIERS: dict[str, dict] = {}


def register_verifier(name: str, cheap_load: bool = True):
    """Decorator: ``fn(v: Verification) -> None`` verifies ``name:PATH``. ``cheap_load``: the loader's
    ``stream=true`` path decodes nothing, so it runs after every verification (else only with decode)."""

    def add(fn):
        VERIFIERS[name] = {"fn": fn, "cheap_load": cheap_load}
        return fn

    return add


def verifier_for(name: str) -> tuple[Optional[Callable], bool]:
    """(verifier or None, cheap_load) of the dataset prefix ``name`` (a registered ``PREFIX:PATH`` loader)."""
    from .registry import PATH_DATASETS

    if name not in PATH_DATASETS:
        raise UserError(f"unknown downloaded dataset {name!r}; known: {', '.join(sorted(PATH_DATASETS))}")
    if name in VERIFIERS:
        return VERIFIERS[name]["fn"], VERIFIERS[name]["cheap_load"]
    module = sys.modules.get(getattr(PATH_DATASETS[name], "__module__", ""), None)
    fn = getattr(module, "verify_files", None)
    return (fn, getattr(module, "VERIFY_CHEAP_LOAD", True)) if callable(fn) else (None, True)


def verify_dataset(name: str, path, seed: int = 0, options: Optional[dict] = None, decode: bool = False,
                   load: bool = True) -> Verification:
    """Verify the copy of dataset ``name`` (isic, plant, cub, waterbirds, ...) at ``path`` with the loader
    ``options``: every problem collected (see the module docstring). Option errors are UserErrors."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"verify: seed must be a non-negative integer, got {seed!r}")
    options = dict(options or {})
    v = Verification(name, Path(path), seed, options, decode)
    fn, cheap_load = verifier_for(name)
    if fn is None:
        v.notes.append(f"{name} has no verifier of its own: the loader ran, and it stops at its first problem")
        _load(v, compare=False)
        return v
    fn(v)
    if load and v.ok and (cheap_load or decode):
        _load(v, compare=True)
    return v


def _load(v: Verification, compare: bool) -> None:
    """Run the loader and, with ``compare`` (a verifier's image loaders, run with stream=true), check that its
    splits hold the verifier's images; without, it runs with the options as given."""
    from .registry import load_dataset

    options = {k: val for k, val in v.options.items() if k not in RUNTIME_OPTIONS} if compare else dict(v.options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = load_dataset(v.spec, seed=v.seed, **({"stream": True} if compare else {}), **options)
        except DataError as exc:
            v.loaded = False
            v.problem("loader", v.spec, str(exc))
            return
    v.notes += [str(w.message) for w in caught]
    v.loaded = True
    if not compare:
        return
    real = {os.path.realpath(p): k for k, p in v.files.items()}
    for s in SPLIT_NAMES:
        part = data.split(s)
        decoder, rows = getattr(part, "decoder", None), getattr(part, "rows", None)
        if decoder is None or rows is None:
            continue
        got = [real.get(os.path.realpath(decoder.examples[int(j)][0]), decoder.examples[int(j)][0]) for j in rows]
        if got != v.splits[s]:  # a verifier that does not follow its loader: a bug, reported
            diff = next((k for k in got if k not in v.splits[s]), None) or next(
                (k for k in v.splits[s] if k not in got), None) or "the order"
            v.loaded = False
            v.problem("loader", v.spec, f"the loader's {s} split ({len(got)} images) differs from the verifier's "
                                        f"({len(v.splits[s])} images), e.g. at {diff}")


def _root_ok(v: Verification) -> bool:
    if v.root.is_dir():
        return True
    v.problem("missing", v.root, "no such directory" if not v.root.exists() else "not a directory")
    return False


def _empty_splits(v: Verification, split: np.ndarray, where, why: dict) -> None:
    for i, s in enumerate(SPLIT_NAMES):
        if not (np.asarray(split) == i).any():
            v.problem("malformed", where, f"the {s} split is empty" + (f" ({why[s]})" if s in why else ""))


def _compare_size(v: Verification, where: str, mask_hw, image_hw, what: str = "mask") -> None:
    if mask_hw is not None and image_hw is not None and tuple(mask_hw) != tuple(image_hw):
        v.problem("mask size", where, f"{what} is {mask_hw[0]}x{mask_hw[1]} but its image is "
                                      f"{image_hw[0]}x{image_hw[1]}")


# ------------------------------------------------------------------------------------------ isic


@register_verifier("isic")
def verify_isic(v: Verification) -> None:
    """ISIC in Rieger et al.'s or Heo et al.'s layout, as ``data/isic.py`` reads it."""
    from . import isic
    from .folder import _parse_normalize, _parse_size

    source = f"isic:{v.root}"
    opts = parse_options(source, v.options, isic.DEFAULTS)
    _parse_size(source, opts["size"])
    _parse_normalize(source, opts["normalize"], 3)
    dilate_by = isic.count_option(source, "dilate", opts["dilate"], 0, isic.MAX_DILATE)
    layout = opts["layout"]
    if layout not in (None, "auto", *isic.LAYOUTS):
        raise UserError(f"{source}: option layout must be auto, rieger or heo, got {layout!r}")
    if not _root_ok(v):
        return
    if layout in (None, "auto"):
        layout = "heo" if (v.root / "processed" / "patch_no_cancer_again").is_dir() else "rieger"
    split_seed = opts["split_seed"]
    split_seed = (42 if layout == "heo" else 0) if split_seed is None else \
        isic.count_option(source, "split_seed", split_seed, 0, 2**63 - 1)
    v.settings = {"layout": layout, "split_seed": split_seed, "dilate": dilate_by}

    def listing(folder: Path, what: str) -> list[str]:
        try:
            names, skipped = isic.list_images(folder, what)
        except DataError as exc:
            v.data_error("missing" if not folder.exists() else "unreadable", exc, folder)
            return []
        if skipped:
            v.notes.append(f"{folder}: {skipped} entr{'y' if skipped == 1 else 'ies'} skipped (not images)")
        return names

    paper = isic.HEO if layout == "heo" else isic.RIEGER
    seg_dir = v.root / "segmentation"
    seg_names = listing(seg_dir, f"the patch masks of the {layout} layout ({paper})")
    folders = []
    for sub, label, group, has_segs in isic.FOLDERS[layout]:
        folder = v.root / sub
        names = listing(folder, f"{isic.CLASSES[label]} images of the {layout} layout ({paper})")
        if not names and folder.is_dir():
            v.problem("malformed", folder, f"no images ({isic.GROUPS[group]} lesions expected)")
        folders.append((folder, names, label, group, has_segs))
    seg_set = set(seg_names)
    target, target_names = next((f[0], set(f[1])) for f in folders if f[4])
    malignant_dir, malignant = folders[-1][0], set(folders[-1][1])
    for name in seg_names:
        if name not in target_names:
            v.problem("malformed", seg_dir / name,
                      f"a segmentation of the malignant image {malignant_dir / name}; patches are annotated on "
                      "benign images only" if name in malignant else f"no matching image {target / name}")
    keys, groups = [], []
    for folder, names, _, group, has_segs in folders:
        for name in names:
            image = folder / name
            hw = v.check_image(image)
            seg = has_segs and name in seg_set
            if has_segs and layout == "heo" and not seg:
                v.problem("missing", seg_dir / name, f"the segmentation of {image} (every image in {folder.name} "
                                                     "has a patch mask)")
            if seg:
                _compare_size(v, str(seg_dir / name), v.check_image(seg_dir / name), hw, "segmentation")
            keys.append(v.key(image))
            groups.append(1 if group == 0 and seg else group)
    split = isic._split(layout, len(keys), split_seed) if keys else np.zeros(0, dtype=np.int64)
    _empty_splits(v, split, v.root, {})
    v.set_splits(keys, split, np.array(groups), isic.GROUPS)


# ------------------------------------------------------------------------------------------ plant


@register_verifier("plant", cheap_load=False)
def verify_plant(v: Verification) -> None:
    """Heo et al.'s plant layout, as ``data/plant.py`` reads it (the mask pickle is loaded, the images'
    headers read and compared with their masks' sizes)."""
    from . import plant
    from .csv_common import option_fraction, stratified_split
    from .folder import _parse_normalize, _parse_size

    source = f"plant:{v.root}"
    opts = parse_options(source, v.options, plant.DEFAULTS)
    fold = plant.count_option(source, "fold", opts["fold"], 0, 10**6)
    _parse_size(source, opts["size"])
    _parse_normalize(source, opts["normalize"], 3)
    val_f = option_fraction(source, "val_fraction", opts["val_fraction"])
    split_seed = plant.count_option(source, "split_seed", opts["split_seed"], 0, 2**63 - 1)
    v.settings = {"fold": fold, "val_fraction": val_f, "split_seed": split_seed}
    v.count_by = "class"
    if not _root_ok(v):
        return
    data_dir, lists = v.root / "rgb_data", v.root / "rgb_dataset_splits"
    for folder in (data_dir, lists):
        if not folder.is_dir():
            v.problem("missing", folder, f"no such folder (expected the plant layout of {plant.HEO})")
    if not lists.is_dir():
        return
    seen: dict = {}
    parts: dict = {}
    for name in ("train", "test", "val"):
        list_path = lists / f"{name}_{fold}.txt"
        if name == "val" and not os.path.lexists(list_path):
            continue
        parts[name] = _plant_list(v, list_path, data_dir, seen)
    entries = [e for name in ("train", "test", "val") for e in parts.get(name, [])]
    split = np.array([SPLIT_NAMES.index(name) for name in ("train", "test", "val") for _ in parts.get(name, [])],
                     dtype=np.int64)
    y = np.array([label for _, _, label, _, _ in entries], dtype=np.int64)
    if "val" not in parts and len(y):
        split = stratified_split(y, np.random.default_rng(split_seed), val_f, 0.0, np.where(split == 0, -1, split))
    _empty_splits(v, split, lists, {"val": f"raise val_fraction or add val_{fold}.txt"})

    pickle_path = v.root / plant.MASK_FILE
    masks = None
    if not os.path.lexists(pickle_path):
        v.problem("missing", pickle_path, "no such file (the plant masks)")
    else:
        v.add_file(pickle_path)
        try:
            masks = plant.load_masks(pickle_path)
        except DataError as exc:
            v.data_error("malformed", exc, pickle_path)
    for image, stem, _, where, _ in entries:
        hw = v.check_image(image, f"{image} ({where})") if image is not None else None
        if masks is None:
            continue
        try:
            m = plant._plant_mask(masks, stem, pickle_path)
        except DataError as exc:
            v.data_error("malformed", exc, pickle_path)
            continue
        _compare_size(v, f"{pickle_path} mask {stem!r}", m.shape, hw)
    del masks
    v.set_splits([e[4] for e in entries], split, y, plant.CLASSES)


def _plant_list(v: Verification, list_path: Path, data_dir: Path, seen: dict) -> list:
    """(image path or None if missing, stem, label, where, key) of each entry of a split list, problems recorded."""
    from . import plant

    if not os.path.lexists(list_path):
        v.problem("missing", list_path, "no such file (a split list)")
        return []
    try:
        raw = read_bounded(list_path, "split list", plant.MAX_LIST_BYTES)
        text = raw.decode("utf-8-sig")
    except DataError as exc:
        v.data_error("unreadable", exc, list_path)
        return []
    except UnicodeDecodeError as exc:
        v.problem("malformed", list_path, f"not UTF-8 text (byte offset {exc.start})")
        return []
    v.add_file(list_path)
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        where = f"{list_path} line {number}"
        try:
            candidates, stem, label = plant.entry_candidates(data_dir, entry, where)
        except DataError as exc:
            v.data_error("malformed", exc, where)
            continue
        if stem in seen:
            v.problem("malformed", where, f"{stem!r} is already listed ({seen[stem]})")
            continue
        seen[stem] = where
        found = next((c for c in candidates if os.path.lexists(c)), None)
        if found is None:
            v.problem("missing", candidates[0], f"no such file (listed in {where}"
                      + (", nor .jpeg, .jpg, .png)" if len(candidates) > 1 else ")"))
        out.append((found, stem, label, where, v.key(found if found is not None else candidates[0])))
    if not out and not any(p.where.startswith(str(list_path)) for p in v.problems):
        v.problem("malformed", list_path, "no entries")
    return out


# ------------------------------------------------------------------------------------------ waterbirds


@register_verifier("waterbirds")
def verify_waterbirds(v: Verification) -> None:
    """Waterbirds (metadata.csv, the images, CUB's segmentations), as ``data/waterbirds.py`` reads it."""
    from . import waterbirds as wb
    from .csv_common import option_bool, read_csv
    from .cub import choice_option, image_options, inside, threshold_option

    source = f"waterbirds:{v.root}"
    opts = parse_options(source, v.options, wb.DEFAULTS)
    image_options(source, opts)
    mask_kind = choice_option(source, "mask", opts["mask"], ("segmentation", "none"))
    option_bool(source, "mask_invert", opts["mask_invert"])
    threshold_option(source, opts["mask_threshold"])
    if opts["segmentations"] is not None and mask_kind != "segmentation":
        raise UserError(f"{source}: option segmentations needs mask=segmentation")
    v.settings = {"mask": mask_kind}
    if not _root_ok(v):
        return
    csv_path = v.root / "metadata.csv"
    if not os.path.lexists(csv_path):
        v.problem("missing", csv_path, f"no such file (a header {','.join(wb.REQUIRED)} expected)")
        return
    try:
        header, rows = read_csv(csv_path, "Waterbirds metadata CSV")
    except DataError as exc:
        v.data_error("malformed", exc, csv_path)
        return
    v.add_file(csv_path)
    missing = [c for c in wb.REQUIRED if c not in header]
    if missing:
        v.problem("malformed", csv_path, f"missing column(s) {', '.join(map(repr, missing))} (header: "
                                         f"{', '.join(header)})")
        return
    seg_dir = Path(opts["segmentations"]) if opts["segmentations"] is not None else v.root / "segmentations"
    index, seg_real = None, None
    if mask_kind == "segmentation":
        if not seg_dir.is_dir():
            v.problem("missing", seg_dir, "no segmentations directory (CUB's segmentations folder); pass "
                                          "segmentations=DIR, or mask=none")
        else:
            seg_real = Path(os.path.realpath(seg_dir))
            index = wb._segmentation_index(seg_real)
            if not _under(seg_dir, v.root):
                v.roots["segmentations"] = seg_dir
    root_real = Path(os.path.realpath(v.root))
    keys, split, groups, seen = [], [], [], {}
    for row, cells in rows:
        cell = {name: cells[header.index(name)] for name in wb.REQUIRED}
        codes = {}
        for column in ("y", "split", "place"):
            try:
                codes[column] = int(wb._codes(csv_path, [row], [cell[column]], column)[0])
            except DataError as exc:
                v.data_error("malformed", exc, csv_path)
        if "img_id" in header:
            raw = cells[header.index("img_id")]
            if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
                v.problem("malformed", f"{csv_path} row {row}, column 'img_id'", f"{raw[:40]!r} is not a "
                                                                                 "non-negative integer")
        at = f"{csv_path} row {row}, column 'img_filename'"
        name = cell["img_filename"]
        if not name:
            v.problem("malformed", at, "empty file name")
            continue
        try:
            real = inside(root_real, name, at, "image path")
        except DataError as exc:
            v.data_error("malformed", exc, at)
            continue
        if real in seen:
            v.problem("malformed", at, f"{name!r} already listed in row {seen[real]}")
            continue
        seen[real] = row
        where = f"{v.root / name} (metadata.csv row {row})"
        hw = v.check_image(v.root / name, where)
        if index is not None:
            stem = Path(name).stem
            found = index.get(stem, [])
            if not found:
                v.problem("missing", seg_dir / Path(name).with_suffix(".png"),
                          f"no segmentation {stem}.png under {seg_dir} (for {where})")
            elif len(found) > 1:
                v.problem("malformed", where, f"{len(found)} segmentations {stem}.png under {seg_dir} "
                                              f"({', '.join(found[:2])})")
            else:
                mask_where = f"{seg_dir / found[0]} (segmentation of metadata.csv row {row})"
                try:
                    inside(seg_real, found[0], mask_where, "segmentation")
                except DataError as exc:
                    v.data_error("malformed", exc, mask_where)
                else:
                    _compare_size(v, mask_where, v.check_image(seg_dir / found[0], mask_where, "L"), hw,
                                  "segmentation")
        if len(codes) == 3:
            keys.append(v.key(v.root / name))
            split.append(codes["split"])
            groups.append(2 * codes["y"] + codes["place"])
    split_a = np.array(split, dtype=np.int64)
    _empty_splits(v, split_a, csv_path, {s: f"no row has split {i}" for i, s in enumerate(SPLIT_NAMES)})
    v.set_splits(keys, split_a, np.array(groups, dtype=np.int64), wb.GROUPS)


def _under(path: Path, root: Path) -> bool:
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------ cub


@register_verifier("cub")
def verify_cub(v: Verification) -> None:
    """CUB-200-2011 (its text files, images and the masks the ``mask`` option reads), as ``data/cub.py``
    reads it."""
    import math

    from . import cub
    from .csv_common import option_bool, option_fraction, split_generator, stratified_split

    source = f"cub:{v.root}"
    opts = parse_options(source, v.options, cub.DEFAULTS)
    cub.image_options(source, opts)
    mask_kind = cub.choice_option(source, "mask", opts["mask"], cub.MASKS)
    cub.choice_option(source, "mask_region", opts["mask_region"], cub.REGIONS)
    option_bool(source, "mask_invert", opts["mask_invert"])
    cub.threshold_option(source, opts["mask_threshold"])
    for option, needs in (("parts", "parts"), ("part_size", "parts"), ("segmentations", "segmentation")):
        if opts[option] is not None and mask_kind != needs:
            raise UserError(f"{source}: option {option} needs mask={needs}")
    part_size = opts["part_size"]
    if part_size is not None and (isinstance(part_size, bool) or not isinstance(part_size, (int, float))
                                  or not math.isfinite(part_size) or part_size <= 0):
        raise UserError(f"{source}: option part_size must be a positive number of pixels, got {part_size!r}")
    val_f = option_fraction(source, "val_fraction", opts["val_fraction"])
    classes = opts["classes"]
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int)
                                or not 2 <= classes <= cub.NUM_CLASSES):
        raise UserError(f"{source}: option classes must be an integer 2..{cub.NUM_CLASSES}, got {classes!r}")
    rng = split_generator(v.seed, "cub")
    v.settings = {"mask": mask_kind, "val_fraction": val_f, "classes": classes, "seed": v.seed}
    v.count_by = "class"
    if not _root_ok(v):
        return

    def lines(path: Path, fmt: str) -> list:
        if not os.path.lexists(path):
            v.problem("missing", path, f"no such file (lines '{fmt}' expected)")
            return []
        try:
            out = cub._lines(path, fmt)
        except DataError as exc:
            v.data_error("malformed", exc, path)
            return []
        v.add_file(path)
        return out

    images_txt = v.root / "images.txt"
    images: dict = {}
    for n, line in lines(images_txt, "<image id> <path>"):
        try:
            image, rel = cub._fields(images_txt, n, line, "<image id> <path>", 2, rest=True)
            image = cub._int(images_txt, n, image, "image id")
        except DataError as exc:
            v.data_error("malformed", exc, images_txt)
            continue
        if image in images:
            v.problem("malformed", f"{images_txt} line {n}", f"image id {image} already on line {images[image][0]}")
            continue
        images[image] = (n, rel)

    def per_image(path: Path, fmt: str, parse) -> dict:
        out, where = {}, {}
        for n, line in lines(path, fmt):
            try:
                cells = cub._fields(path, n, line, fmt, 2)
                image = cub._int(path, n, cells[0], "image id")
                value = parse(n, cells[1])
            except DataError as exc:
                v.data_error("malformed", exc, path)
                continue
            if image not in images:
                v.problem("malformed", f"{path} line {n}", f"image id {image} is not in images.txt")
            elif image in out:
                v.problem("malformed", f"{path} line {n}", f"image id {image} already on line {where[image]}")
            else:
                out[image], where[image] = value, n
        return out

    labels_txt, split_txt = v.root / "image_class_labels.txt", v.root / "train_test_split.txt"
    label_of = per_image(labels_txt, "<image id> <class id>", lambda n, c: cub._class(labels_txt, n, c))
    train_of = per_image(split_txt, "<image id> <is train>", lambda n, c: cub._flag(split_txt, n, c, "is-train value"))
    for path, table in ((labels_txt, label_of), (split_txt, train_of)):
        if any(Path(p) == path for p in v.files.values()):
            for image, (n, _) in images.items():
                if image not in table:
                    v.problem("malformed", path, f"no line for image id {image} (images.txt line {n})")
    ids = [i for i in images if i in label_of and i in train_of and (classes is None or label_of[i] <= classes)]

    if mask_kind == "box":
        boxes_txt = v.root / "bounding_boxes.txt"
        if lines(boxes_txt, "<image id> <x> <y> <width> <height>"):
            try:
                boxes = cub._per_image(boxes_txt, images, "<image id> <x> <y> <width> <height>", 5,
                                       lambda n, c: cub._box(boxes_txt, n, c))
                cub._require_all(boxes_txt, boxes, ids, images)
            except DataError as exc:
                v.data_error("malformed", exc, boxes_txt)
    elif mask_kind == "parts":
        parts_txt, locs_txt = v.root / "parts" / "parts.txt", v.root / "parts" / "part_locs.txt"
        if lines(parts_txt, "<part id> <name>") and lines(locs_txt, "<image id> <part id> <x> <y> <visible>"):
            try:
                table = cub._parts(v.root)
                cub._part_locations(v.root, images, table, cub._chosen_parts(v.root, source, table, opts["parts"]))
            except DataError as exc:
                v.data_error("malformed", exc, parts_txt)
    seg_dir = Path(opts["segmentations"]) if opts["segmentations"] is not None else v.root / "segmentations"
    check_segs = mask_kind == "segmentation"
    if check_segs and not seg_dir.is_dir():
        v.problem("missing", seg_dir, "no segmentations directory (CUB's segmentations.tgz, extracted); pass "
                                      "segmentations=DIR, or mask=box, mask=parts or mask=none")
        check_segs = False
    if check_segs and not _under(seg_dir, v.root):
        v.roots["segmentations"] = seg_dir
    images_dir = v.root / "images"
    check_images = images_dir.is_dir()
    if not check_images:
        v.problem("missing", images_dir, "no such directory (the CUB images)")
    images_real, seg_real = Path(os.path.realpath(images_dir)), Path(os.path.realpath(seg_dir))
    keys = []
    for image in ids:
        n, rel = images[image]
        keys.append(v.key(images_dir / rel))
        if not check_images:
            continue
        where = f"{images_dir / rel} (images.txt line {n})"
        try:
            cub.inside(images_real, rel, f"{images_txt} line {n}", "image path")
        except DataError as exc:
            v.data_error("malformed", exc, f"{images_txt} line {n}")
            continue
        hw = v.check_image(images_dir / rel, where)
        if check_segs:
            seg_rel = str(Path(rel).with_suffix(".png"))
            mask_where = f"{seg_dir / seg_rel} (segmentation of images.txt line {n})"
            try:
                cub.inside(seg_real, seg_rel, f"{images_txt} line {n}", "segmentation path")
            except DataError as exc:
                v.data_error("malformed", exc, f"{images_txt} line {n}")
                continue
            _compare_size(v, mask_where, v.check_image(seg_dir / seg_rel, mask_where, "L"), hw, "segmentation")
    if not ids:
        v.set_splits([], [], [], [])
        return
    num_classes = max(label_of[i] for i in ids)
    names = [f"{c:03d}" for c in range(1, num_classes + 1)]
    for image in reversed(ids):
        rel = images[image][1]
        if "/" in rel:
            names[label_of[image] - 1] = rel.split("/")[0]
    y = np.array([label_of[i] - 1 for i in ids], dtype=np.int64)
    is_train = np.array([train_of[i] for i in ids], dtype=bool)
    split = stratified_split(y, rng, val_f, 0.0, np.where(is_train, -1, 2))
    _empty_splits(v, split, v.root, {"val": f"val_fraction={val_f:g} of each class's training images rounds to "
                                            "none", "train": "train_test_split.txt has no train images",
                                     "test": "train_test_split.txt has no test images"})
    v.set_splits(keys, split, y, names)
