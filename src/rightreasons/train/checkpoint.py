"""Training checkpoints: directories written atomically, loaded safely, verified by sha256.

A checkpoint is a directory ``<root>/epoch-NNNN/`` holding
  model.safetensors   model weights
  best.safetensors    the best weights so far (only when selecting on validation)
  state.pt            optimiser state, RNG states (as uint8 tensors), schedule state, counters and history;
                      plain containers of tensors and numbers, loaded with ``torch.load(weights_only=True)``
  meta.json           format version, epoch, step, the run's config, and the sha256 of every file above.
It is written into a temporary sibling directory, fsynced, and renamed into place; only then is
``<root>/latest`` (a one-line file naming it) replaced atomically and older checkpoints removed. A crash
at any point leaves the previous complete checkpoint in place; a failed write (a full disk, a file-size
limit) is a one-line :class:`CheckpointError` naming the checkpoint and the cause, with the temporary
directory removed. Files and directories get the permissions of the user's own (0666 / 0777 minus the
umask). Loading verifies every hash before reading anything, so a truncated or tampered checkpoint gives a
clear error and never a partial load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import UserError
from ..files import atomic_write_text, failure_cause, fsync_dir, read_json, umask, write_synced

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










def _save_state(state: dict, path: Path) -> None:
    try:
        torch.save(state, path)
    except RuntimeError:
        # torch reports a failed write in its own words ("unexpected pos ..."); write the same bytes with
        # Python to get the operating system's reason (a full disk, a file-size limit), or to succeed after all
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_synced(path, buffer.getvalue())


def _on_cpu(state: dict) -> dict:
    """Tensors of a state dict detached, on the CPU and contiguous (what safetensors stores, from any device)."""
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_checkpoint(root: str | Path, epoch: int, model_state: dict, state: dict, config: dict,
                    best_state: Optional[dict] = None, keep: int = 1) -> Path:
    """Write checkpoint ``epoch`` under ``root`` atomically and point ``root/latest`` at it. A write that
    fails (a full disk, a file-size limit) is a one-line :class:`CheckpointError` naming the checkpoint and
    the cause; the previous checkpoint stays the latest and no temporary directory is left."""
    root = Path(root)
    name = f"epoch-{epoch:04d}"
    final = root / name
    kept = f"; the latest checkpoint is still {latest_name}" if (latest_name := _pointer(root)) else ""
    tmp = old = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        os.chmod(tmp, 0o777 & ~umask())  # as mkdir makes directories (mkdtemp makes them owner-only)
        write_synced(tmp / "model.safetensors", save(_on_cpu(model_state)))
        if best_state is not None:
            write_synced(tmp / "best.safetensors", save(_on_cpu(best_state)))
        _save_state(state, tmp / "state.pt")
        files = sorted(p.name for p in tmp.iterdir())
        for f in files:
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        meta = {"format": FORMAT, "epoch": epoch, "step": state.get("step"), "config": config,
                "sha256": {f: _sha256(tmp / f) for f in files}}
        write_synced(tmp / "meta.json", json.dumps(meta, indent=2).encode())
        if final.exists():  # a checkpoint of this epoch from an earlier attempt: set aside, removed below
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=root))
            os.rename(final, old / name)
        os.rename(tmp, final)
        tmp = None
        fsync_dir(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            old = None
        atomic_write_text(root / LATEST, name + "\n")
    except (OSError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"{final}: cannot write the checkpoint ({failure_cause(exc)}){kept}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / name).exists() and not final.exists():  # put the earlier one back
            os.rename(old / name, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    _prune(root, keep=keep, current=name)
    return final


def _pointer(root: Path) -> Optional[str]:
    """The name ``root/latest`` holds (None without one)."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    try:
        return pointer.read_text()[:100].strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _epoch_number(path: Path) -> Optional[int]:
    found = re.fullmatch(r"epoch-(\d+)", path.name)
    return int(found.group(1)) if found and path.is_dir() else None


def _prune(root: Path, keep: int, current: str) -> None:
    """Remove checkpoints older than the ``keep`` newest up to ``current``, any after it (left by a longer run
    that was abandoned), and the temporary directories of interrupted writes."""
    now = int(current.removeprefix("epoch-"))
    numbered = sorted((n, p) for p in root.glob("epoch-*") if (n := _epoch_number(p)) is not None)
    done = [p for n, p in numbered if n <= now]
    stale = (done[:-keep] if keep > 0 else []) + [p for n, p in numbered if n > now]
    for old in stale:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
    for temporary in root.glob(".epoch-*"):
        shutil.rmtree(temporary, ignore_errors=True)


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
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path}: cannot load checkpoint ({str(exc).splitlines()[0]})") from None
    return {"meta": meta, "model": model, "best": best, "state": state}
