"""PNG files of (H, W, 3) uint8 arrays, written with Pillow."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from ..files import atomic_write


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 array (8-bit RGB)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
        raise UserError(f"encode_png: expected a non-empty (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write ``rgb`` as a PNG file atomically."""
    data = encode_png(rgb)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write(path, write)
    return Path(path)
