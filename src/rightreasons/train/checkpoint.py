"""Training checkpoints: directories written atomically, loaded safely, verified by sha256.

A checkpoint is a directory ``<root>/epoch-NNNN/`` holding
  model.safetensors   model weights
  best.safetensors    the best weights so far (only when selecting on validation)
  state.pt            optimiser state, RNG states (as uint8 tensors), schedule state, counters and history;
                      plain containers of tensors and numbers, loaded with ``torch.load(weights_only=True)``
  meta.json           format version, epoch, step, the run's config, and the sha256 of every file above.
It is written into a temporary sibling directory, fsynced, and renamed into place; only then is
``<root>/latest`` (a one-line file naming it) replaced atomically and older checkpoints removed. A crash
at any point leaves the previous complete checkpoint in place. Loading verifies every hash before
reading anything, so a truncated or tampered checkpoint gives a clear error and never a partial load.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import UserError
from ..files import atomic_write_text, read_json

FORMAT = 1
LATEST = "latest"


class CheckpointError(UserError):
    """A checkpoint is missing, incomplete, corrupt or does not fit the run."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(root: str | Path, epoch: int, model_state: dict, state: dict, config: dict,
                    best_state: Optional[dict] = None, keep: int = 1) -> Path:
    """Write checkpoint ``epoch`` under ``root`` atomically and point ``root/latest`` at it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_file({k: v.detach().contiguous() for k, v in model_state.items()}, str(tmp / "model.safetensors"))
        if best_state is not None:
            save_file({k: v.detach().contiguous() for k, v in best_state.items()}, str(tmp / "best.safetensors"))
        torch.save(state, tmp / "state.pt")
        files = sorted(p.name for p in tmp.iterdir())
        for f in files:
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        meta = {"format": FORMAT, "epoch": epoch, "step": state.get("step"), "config": config,
                "sha256": {f: _sha256(tmp / f) for f in files}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        with open(tmp / "meta.json", "rb") as fh:
            os.fsync(fh.fileno())
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / LATEST, name + "\n")
    _prune(root, keep=keep, current=name)
    return final


def _prune(root: Path, keep: int, current: str) -> None:
    done = sorted(p for p in root.glob("epoch-*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".epoch-*"):  # temporary directories of interrupted writes
        shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Optional[Path]:
    """The checkpoint ``root/latest`` names, or None when there is none yet."""
    root = Path(root)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not name.startswith("epoch-") or "/" in name or not (root / name).is_dir():
        raise CheckpointError(f"{pointer}: names {name!r}, which is not a checkpoint directory")
    return root / name


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint directory (format, epoch, step, config, file hashes)."""
    meta_path = Path(path) / "meta.json"
    try:
        meta = read_json(meta_path, "checkpoint metadata")
    except UserError as exc:
        reason = str(exc).removeprefix(f"{meta_path}: ")
        raise CheckpointError(f"{meta_path}: unreadable checkpoint metadata ({reason})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("sha256"), dict):
        raise CheckpointError(f"{meta_path}: not a rightreasons checkpoint (format {FORMAT} expected)")
    return meta


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Verify and load a checkpoint directory: ``{"meta", "model", "best", "state"}``."""
    path = Path(path)
    meta_path = path / "meta.json"
    meta = read_meta(path)
    expected = meta["sha256"]
    for required in ("model.safetensors", "state.pt"):
        if required not in expected:
            raise CheckpointError(f"{meta_path}: lists no {required}")
    present = {p.name for p in path.iterdir()} - {"meta.json"}
    if present != set(expected):
        raise CheckpointError(f"{path}: files {sorted(present)} do not match the metadata {sorted(expected)}")
    for name, digest in expected.items():
        actual = _sha256(path / name)
        if actual != digest:
            raise CheckpointError(f"{path / name}: sha256 mismatch (corrupt or modified checkpoint)")
    try:
        model = load_file(str(path / "model.safetensors"))
        best = load_file(str(path / "best.safetensors")) if "best.safetensors" in expected else None
        state = torch.load(path / "state.pt", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path}: cannot load checkpoint ({str(exc).splitlines()[0]})") from None
    return {"meta": meta, "model": model, "best": best, "state": state}
