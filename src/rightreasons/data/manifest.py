"""Manifests of a downloaded dataset: every file its loader reads (path, size, sha256), the split each image
lands in and the loader options, as JSON, so that two copies can be compared file by file.

Format (``version`` 1)::

    {"format": "rightreasons-data-manifest", "version": 1, "dataset": "isic", "seed": 0,
     "options": {...},          # the loader options given (no runtime options, no paths of this machine)
     "settings": {...},         # what decides the files and splits, resolved (layout, split_seed, fold, ...)
     "counts": {"train": {GROUP: N, ...}, "val": ..., "test": ...},
     "files": [{"path": "processed/cancer/ISIC_0000001.jpg", "size": 40213, "sha256": "..."}, ...],
     "splits": {"train": [PATH, ...], "val": [...], "test": [...]}}

Paths are relative to the dataset folder, with ``/`` separators; a file under a separate directory given
by an option (CUB's ``segmentations=DIR``) is ``@segmentations/<path in DIR>``. Files are sorted by path;
split lists keep the loader's order. Nothing in a manifest depends on the machine or the time, so two
copies of the same data give the same manifest.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Optional

from ..errors import DataError, UserError
from ..files import atomic_write_json, read_json
from .csv_common import SPLIT_NAMES
from .verify import PATH_OPTIONS, RUNTIME_OPTIONS, Verification, verify_dataset

FORMAT = "rightreasons-data-manifest"
VERSION = 1
#: the largest manifest read (a CUB manifest of 12,000 images and masks is about 4 MB)
MAX_MANIFEST_BYTES = 256 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> tuple[int, str]:
    """(size in bytes, hex sha256) of a file, read in chunks; an unreadable file is a one-line DataError."""
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return size, digest.hexdigest()


def manifest_options(options: dict) -> dict:
    """The loader options a manifest records: every one given but the runtime and machine-path ones."""
    return {k: v for k, v in sorted(options.items()) if k not in RUNTIME_OPTIONS and k not in PATH_OPTIONS}


def build_manifest(v: Verification) -> dict:
    """The manifest of a verified, complete copy (checksums every file it lists)."""
    if not v.ok:
        raise DataError(f"{v.summary()}; a manifest records a complete copy (see rightreasons data verify)")
    if not v.files:
        raise DataError(f"{v.spec}: {v.name} has no verifier that lists the files its loader reads, so no manifest")
    files = []
    for key in sorted(v.files):
        size, digest = sha256_file(v.files[key])
        files.append({"path": key, "size": size, "sha256": digest})
    return {"format": FORMAT, "version": VERSION, "dataset": v.name, "seed": v.seed,
            "options": manifest_options(v.options), "settings": dict(v.settings), "counts": v.counts,
            "files": files, "splits": {s: list(v.splits[s]) for s in SPLIT_NAMES}}


def write_manifest(name: str, path, out, seed: int = 0, options: Optional[dict] = None, overwrite: bool = False,
                   decode: bool = False) -> tuple[Path, Verification]:
    """Verify the copy of ``name`` at ``path`` (``decode``: every image decoded) and write its manifest to
    ``out`` atomically, refusing an existing ``out`` unless ``overwrite``. Returns (out, the verification)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists; pass --overwrite to replace it")
    if out.exists() and not out.is_file():
        raise UserError(f"{out}: exists and is not a file")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such directory (for the manifest {out.name})")
    v = verify_dataset(name, path, seed=seed, options=options, decode=decode)
    manifest = build_manifest(v)
    atomic_write_json(out, manifest)
    return out, v


# ------------------------------------------------------------------------------------------ reading


def _bad(path, field: str, why: str) -> UserError:
    return UserError(f"{path}: manifest field {field!r} {why}")


def _rel_path(path, field: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(path, field, f"must be a non-empty string, got {str(value)[:60]!r}")
    parts = value.split("/")
    if value.startswith("/") or "\\" in value or any(p in ("", ".", "..") for p in parts) or not value.isprintable():
        raise _bad(path, field, f"must be a relative path with / separators and no '..', got {value[:80]!r}")
    return value


def read_manifest(path, name: Optional[str] = None) -> dict:
    """The validated manifest at ``path`` (of dataset ``name`` if given); every error is one line naming the
    file and field."""
    data = read_json(path, "data manifest", MAX_MANIFEST_BYTES)
    if not isinstance(data, dict):
        raise UserError(f"{path}: a data manifest must be a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise _bad(path, "format", f"must be {FORMAT!r} (is this a data manifest?), got {data.get('format')!r}")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _bad(path, "version", f"must be an integer, got {version!r}")
    if version > VERSION:
        raise _bad(path, "version", f"is {version}; this rightreasons reads version {VERSION} (upgrade it)")
    if version < 1:
        raise _bad(path, "version", f"must be at least 1, got {version}")
    known = {"format", "version", "dataset", "seed", "options", "settings", "counts", "files", "splits"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _bad(path, unknown[0], "is not a manifest field")
    dataset = data.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise _bad(path, "dataset", f"must be a dataset name, got {dataset!r}")
    if name is not None and dataset != name:
        raise UserError(f"{path}: a manifest of {dataset!r}, not of {name!r}")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _bad(path, "seed", f"must be a non-negative integer, got {seed!r}")
    for key in ("options", "settings", "counts"):
        if not isinstance(data.get(key, {}), dict):
            raise _bad(path, key, f"must be an object, got {type(data.get(key)).__name__}")
    for key, value in data.get("options", {}).items():
        if isinstance(value, (dict, list)):
            raise _bad(path, f"options.{key}", "must be a string, number, boolean or null")
    files = data.get("files")
    if not isinstance(files, list):
        raise _bad(path, "files", f"must be a list, got {type(files).__name__}")
    seen: dict = {}
    for i, entry in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"path", "size", "sha256"}:
            raise _bad(path, where, "must be an object with exactly path, size and sha256")
        rel = _rel_path(path, f"{where}.path", entry["path"].removeprefix("@") if isinstance(entry["path"], str)
                        else entry["path"])
        size = entry["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _bad(path, f"{where}.size", f"must be a non-negative integer, got {size!r}")
        if not isinstance(entry["sha256"], str) or not _SHA256.fullmatch(entry["sha256"]):
            raise _bad(path, f"{where}.sha256", f"must be 64 lower-case hex digits, got {str(entry['sha256'])[:70]!r}")
        if entry["path"] in seen:
            raise _bad(path, f"{where}.path", f"{rel!r} is already listed as files[{seen[entry['path']]}]")
        seen[entry["path"]] = i
    splits = data.get("splits")
    if not isinstance(splits, dict) or set(splits) != set(SPLIT_NAMES):
        raise _bad(path, "splits", "must be an object with exactly train, val and test")
    placed: dict = {}
    for s in SPLIT_NAMES:
        if not isinstance(splits[s], list):
            raise _bad(path, f"splits.{s}", f"must be a list of paths, got {type(splits[s]).__name__}")
        for i, rel in enumerate(splits[s]):
            if not isinstance(rel, str) or rel not in seen:
                raise _bad(path, f"splits.{s}[{i}]", f"{str(rel)[:80]!r} is not a path listed in files")
            if rel in placed:
                raise _bad(path, f"splits.{s}[{i}]", f"{rel!r} is already in {placed[rel]}")
            placed[rel] = s
    return data


# ------------------------------------------------------------------------------------------ comparing


def compare_manifest(v: Verification, manifest: dict, where: str = "manifest") -> None:
    """Add to ``v`` the differences from ``manifest``: files missing here, extra here (read by the loader,
    not in the manifest), changed (size or sha256), images in another split, and settings that differ."""
    v.compared = where
    for key, value in manifest.get("settings", {}).items():
        if key in v.settings and v.settings[key] != value:
            v.problem("options", where, f"{key} is {v.settings[key]!r} here but {value!r} in the manifest")
    listed = {e["path"]: e for e in manifest["files"]}
    reported = {p.where.split(" (")[0] for p in v.problems if p.kind == "missing"}
    for key in sorted(listed):
        entry = listed[key]
        if key not in v.files:
            if str(v.path_of(key)) not in reported:  # else the verifier has named it already
                v.problem("missing", key, f"in the manifest ({entry['size']} bytes), not read by the loader here")
            continue
        path = v.files[key]
        if not os.path.isfile(path):
            continue  # already reported by the verifier (missing or unreadable)
        try:
            size, digest = sha256_file(path)
        except DataError as exc:
            v.problem("unreadable", key, str(exc))
            continue
        if (size, digest) != (entry["size"], entry["sha256"]):
            what = f"{size} bytes, manifest {entry['size']}" if size != entry["size"] else "same size"
            v.problem("changed", key, f"sha256 {digest[:12]}... differs from the manifest's {entry['sha256'][:12]}... "
                                      f"({what})")
    for key in sorted(set(v.files) - set(listed)):
        v.problem("extra", key, "read by the loader here, not in the manifest")
    theirs = {rel: s for s in SPLIT_NAMES for rel in manifest["splits"][s]}
    mine = {rel: s for s in SPLIT_NAMES for rel in v.splits.get(s, [])}
    for rel in sorted(set(theirs) | set(mine)):
        a, b = mine.get(rel), theirs.get(rel)
        if a == b:
            continue
        if a is not None and b is not None:
            v.problem("split", rel, f"in {a} here, in {b} in the manifest")
        elif a is None and rel in v.files:
            v.problem("split", rel, f"in {b} in the manifest, in no split here")
        elif b is None and rel in listed:
            v.problem("split", rel, f"in {a} here, in no split in the manifest")


def verify_with_manifest(name: str, path, manifest_path, seed: Optional[int] = None,
                         options: Optional[dict] = None, decode: bool = False) -> Verification:
    """Verify the copy at ``path`` and compare it with the manifest at ``manifest_path``, with the manifest's
    options under ``options`` (e.g. a ``segmentations=DIR`` of this machine) and its seed unless ``seed``."""
    manifest = read_manifest(manifest_path, name)
    opts = {**manifest.get("options", {}), **(options or {})}
    v = verify_dataset(name, path, seed=manifest.get("seed", 0) if seed is None else seed, options=opts,
                       decode=decode)
    compare_manifest(v, manifest, str(manifest_path))
    return v
