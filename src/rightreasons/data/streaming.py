"""Datasets decoded when a batch is asked for, so that an image folder need not fit in memory.

:class:`StreamingImageDataset` keeps labels, groups and annotation flags in memory and asks a *decoder*
for the inputs and masks of each batch: in the calling process (:meth:`~StreamingImageDataset.batch`) or
in ``workers`` DataLoader processes (:meth:`~StreamingImageDataset.iter_batches`). The order of the
batches is the order of the index tensors it is given, which come from the main process's generator,
so the batches do not depend on the number of workers. :class:`ExampleCache` stores decoded examples
as ``.npy`` files for later epochs and runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Protocol

import numpy as np
import torch

from ..batch import Batch
from ..errors import DataError, UserError
from ..files import failure_cause, umask
from .dataset import BatchedDataset

#: bumped when the layout of a cache file changes (older files are then never read)
CACHE_VERSION = 1
CRC_BYTES = 4
#: the largest .npy header a cache file may have (numpy writes 128 bytes for a 1-D array)
MAX_HEADER = 4096


class Decoder(Protocol):
    """What a :class:`StreamingImageDataset` decodes with: picklable, deterministic (no randomness)."""

    def decode_into(self, rows: np.ndarray, x: np.ndarray, mask: np.ndarray) -> None:
        """Write the examples ``rows`` into ``x`` (float32 (B, C, H, W), the inputs) and ``mask`` (float32
        (B, 1, H, W), 1 = ignore). A bad example is a one-line UserError naming its file."""
        ...


class ExampleCache:
    """uint8 arrays on disk, one ``<key>.npy`` file per example in ``directory``, the key a hash of what
    the array was made from (:meth:`key`). A file is written under a temporary name and renamed; it holds
    the array followed by the CRC-32 of its bytes, and is read with ``allow_pickle=False``. A file that
    cannot be read, has another shape or a wrong checksum is rebuilt. Nothing else in ``directory`` is
    touched."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    @staticmethod
    def key(*parts) -> str:
        """A file name stem for ``parts`` (JSON-serialisable: paths as strings, sizes, times, options)."""
        text = json.dumps([CACHE_VERSION, *parts], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def read(self, key: str, size: int) -> Optional[np.ndarray]:
        """The stored uint8 array of ``size`` bytes (1-D), or None if there is none or it is not sound."""
        try:
            with open(self.path(key), "rb") as fh:
                if os.fstat(fh.fileno()).st_size > size + CRC_BYTES + MAX_HEADER:
                    return None  # not ours (and its header may claim any shape): rebuilt
                stored = np.load(fh, allow_pickle=False)
        except Exception:  # missing, truncated, not an .npy file, unreadable: rebuilt
            return None
        if not isinstance(stored, np.ndarray) or stored.dtype != np.uint8 or stored.shape != (size + CRC_BYTES,):
            return None
        payload = stored[:size]
        if zlib.crc32(payload) != int.from_bytes(stored[size:].tobytes(), "little"):
            return None
        return payload

    def write(self, key: str, payload: np.ndarray) -> None:
        """Store the uint8 ``payload`` (any shape; kept flat) under ``key``, atomically (temp file + rename)."""
        flat = np.ascontiguousarray(payload, dtype=np.uint8).reshape(-1)
        crc = np.frombuffer(zlib.crc32(flat).to_bytes(CRC_BYTES, "little"), dtype=np.uint8)
        target = self.path(key)
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.concatenate([flat, crc]), allow_pickle=False)
            os.chmod(tmp, 0o666 & ~umask())
            os.replace(tmp, target)
        except OSError as exc:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            raise DataError(f"cache {self.directory}: cannot write {target.name} ({failure_cause(exc)})") from None

    def get(self, key: str, size: int, build: Callable[[], np.ndarray]) -> np.ndarray:
        """The stored array of ``size`` bytes under ``key``, else ``build()`` (flat uint8), stored first."""
        found = self.read(key, size)
        if found is not None:
            return found
        made = np.ascontiguousarray(build(), dtype=np.uint8).reshape(-1)
        if made.size != size:
            raise ValueError(f"cache: built {made.size} bytes for {key}, expected {size}")
        self.write(key, made)
        return made


class _Failed:
    """A UserError raised while decoding in a worker, sent back as data (re-raised in the main process in
    one line, not as a DataLoader traceback)."""

    def __init__(self, error: UserError):
        self.kind, self.message = type(error), str(error)

    def error(self) -> UserError:
        try:
            return self.kind(self.message)
        except Exception:
            return DataError(self.message)


def _decode(decoder: Decoder, rows: np.ndarray, shape: tuple[int, ...], shared: bool):
    """Inputs (B, *shape) and one-channel masks (B, 1, H, W), float32 tensors; ``shared``: in shared memory
    (a worker's batch then reaches the main process without a copy, and its memory is unmapped when freed)."""
    x, mask = torch.empty((len(rows), *shape)), torch.empty((len(rows), 1, *shape[1:]))
    if shared:
        x, mask = x.share_memory_(), mask.share_memory_()
    decoder.decode_into(rows, x.numpy(), mask.numpy())
    return x, mask


def _positions(n: int, index) -> torch.Tensor:
    """``index`` (a tensor, list or slice over ``n`` examples) as a 1-D tensor of positions 0..n-1."""
    return torch.arange(n)[index].reshape(-1)


class _Decode:
    """The map-style dataset the DataLoader's workers index with ``(positions, table rows)`` pairs."""

    def __init__(self, decoder: Decoder, shape: tuple[int, ...]):
        self.decoder, self.shape = decoder, shape

    def __getitem__(self, item):
        pos, rows = item
        try:
            x, mask = _decode(self.decoder, rows, self.shape, shared=True)
        except UserError as exc:
            return _Failed(exc)
        return pos, x, mask


class WorkerPool:
    """The persistent DataLoader workers of one decoder, shared by every dataset that reads with it (the
    splits of a folder and their subsets), so that a folder has ``workers`` processes, not ``workers`` per
    split: a validation pass reuses the training pass's workers. One pass at a time uses them."""

    def __init__(self):
        self.loader = None  # made on first use
        self.key = None
        self.busy = False  # a pass over the persistent loader is under way

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


class _Indices:
    """A DataLoader sampler over index tensors given per pass (so that persistent workers can be reused)."""

    def __init__(self):
        self.source: Iterable[torch.Tensor] = ()

    def __iter__(self):
        return iter(self.source)


class NotInMemory(UserError, AttributeError):
    """``x`` or ``mask`` of a streaming dataset: an AttributeError (``hasattr`` is False) that the command
    line prints in one line."""


def _same(item):
    return item


class StreamingImageDataset(BatchedDataset):
    """The interface of :class:`~rightreasons.data.dataset.ExplanationDataset`, with the inputs and masks
    decoded per batch by ``decoder`` (see :class:`Decoder`) at positions ``rows`` of its table. ``y``,
    ``group`` and ``has_mask`` are in memory; there is no ``x`` or ``mask`` attribute (use
    :meth:`batch`). ``workers``: DataLoader processes for :meth:`iter_batches` (0 = decode in this
    process); ``pin_memory``: pin the batches' memory (for a GPU); ``pool``: the workers, shared with the
    datasets of the same decoder (default: a pool of its own; :meth:`subset` shares it)."""

    def __init__(self, decoder: Decoder, rows, y: torch.Tensor, group: torch.Tensor, has_mask: torch.Tensor, *,
                 num_classes: int, num_groups: int, name: str, input_range: tuple[float, float],
                 input_shape: tuple[int, ...], workers: int = 0, pin_memory: bool = False,
                 pool: Optional[WorkerPool] = None):
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(rows)
        for what, t in (("y", y), ("group", group), ("has_mask", has_mask)):
            if tuple(t.shape) != (n,):
                raise DataError(f"{name}: {what} has shape {tuple(t.shape)}; expected ({n},)")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise UserError(f"{name}: workers must be a non-negative integer, got {workers!r}")
        self.decoder, self.rows = decoder, rows
        self.y, self.group, self.has_mask = y.long(), group.long(), has_mask.bool()
        self.num_classes, self.num_groups = int(num_classes), int(num_groups)
        self.name = name
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self._input_shape = tuple(int(d) for d in input_shape)
        self.workers, self.pin_memory = workers, bool(pin_memory)
        self._pool = pool if pool is not None else WorkerPool()

    def __len__(self) -> int:
        return len(self.rows)

    def __getattr__(self, name):
        if name in ("x", "mask"):
            raise NotInMemory(f"{self.__dict__.get('name', 'dataset')}: a streaming dataset keeps no {name} in "
                              "memory; read it through batch(index) or iter_batches")
        raise AttributeError(name)

    def __getitem__(self, i):
        b = self.batch(torch.tensor([i]) if isinstance(i, int) else i)
        if isinstance(i, int):
            return b.x[0], b.y[0], b.mask[0].bool(), b.group[0], b.has_mask[0]
        return b.x, b.y, b.mask.bool(), b.group, b.has_mask

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._input_shape

    def _assemble(self, pos: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> Batch:
        return Batch(x, self.y[pos], mask.to(x.dtype).expand(x.shape), self.group[pos], self.has_mask[pos])

    def batch(self, index: torch.Tensor | slice) -> Batch:
        """The examples at ``index``, decoded now in this process (mask cast to the dtype of x)."""
        pos = _positions(len(self), index)
        return self._assemble(pos, *_decode(self.decoder, self.rows[pos.numpy()], self.input_shape, shared=False))

    def _make_loader(self, persistent: bool):
        from torch.utils.data import DataLoader

        return DataLoader(_Decode(self.decoder, self.input_shape), batch_size=None, sampler=_Indices(),
                          num_workers=self.workers, collate_fn=_same, pin_memory=self.pin_memory,
                          persistent_workers=persistent,
                          generator=torch.Generator().manual_seed(0))  # not the global RNG (unused: no randomness)

    def iter_batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[Batch]:
        """The batch of each index tensor, in the order given, decoded by a DataLoader with ``workers``
        processes (kept between passes, shared with the other datasets of the decoder). A bad example raises
        its one-line error here."""
        pool = self._pool
        key = (self.workers, self.pin_memory, self.input_shape)
        persistent = self.workers > 0 and not pool.busy
        if persistent:
            if pool.loader is None or pool.key != key:
                pool.loader, pool.key = None, None  # the old workers shut down before new ones start
                pool.loader, pool.key = self._make_loader(True), key
            loader = pool.loader
            pool.busy = True
        else:  # no workers, or a second pass while one is under way: a loader of its own
            loader = self._make_loader(False)
        positions = (_positions(len(self), index) for index in index_batches)
        loader.sampler.source = ((pos, self.rows[pos.numpy()]) for pos in positions)
        try:
            for item in loader:
                if isinstance(item, _Failed):
                    raise item.error() from None
                yield self._assemble(*item)
        except UserError:
            raise
        except Exception:
            if persistent:  # a worker died or a bug: start afresh next time
                pool.loader = pool.key = None
            raise
        finally:
            if persistent:
                pool.busy = False

    def subset(self, index: torch.Tensor) -> "StreamingImageDataset":
        pos = _positions(len(self), index)
        return StreamingImageDataset(
            self.decoder, self.rows[pos.numpy()], self.y[pos], self.group[pos], self.has_mask[pos],
            num_classes=self.num_classes, num_groups=self.num_groups, name=self.name,
            input_range=self.input_range, input_shape=self.input_shape, workers=self.workers,
            pin_memory=self.pin_memory, pool=self._pool)
