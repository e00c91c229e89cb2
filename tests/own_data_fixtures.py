"""Builders for tiny image folders and CSV tables in tmp dirs (used by the own-data tests)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def make_folder(root: Path, n: int = 12, size: int = 8, masks: bool = True, split: bool = True,
                labels=None, rgb: bool = True, seed: int = 0) -> Path:
    """n images (class = i % 2), class 1 brighter; mask = top-left 2x2 square (white) on every image."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    lines = ["file,label" + (",split" if split else "") + (",mask" if masks else "")]
    for i in range(n):
        y = i % 2
        shape = (size, size, 3) if rgb else (size, size)
        img = rng.integers(0, 100, shape) + 100 * y
        (root / "img" / f"{i:03d}.png").write_bytes(png_bytes(img))
        m = np.zeros((size, size), dtype=np.uint8)
        m[:2, :2] = 255
        (root / "masks" / f"{i:03d}.png").write_bytes(png_bytes(m))
        label = labels[y] if labels else str(y)
        row = [f"img/{i:03d}.png", label]
        if split:
            row.append(("train", "train", "val", "test")[(i // 2) % 4] if n >= 8 else "train")
        if masks:
            row.append(f"masks/{i:03d}.png")
        lines.append(",".join(row))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def set_row(root: Path, row: int, column: str, value: str) -> None:
    """Set one cell of labels.csv (row numbers as in error messages: header = row 1)."""
    path = root / "labels.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row - 1].split(",")
    cells[header.index(column)] = value
    lines[row - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def make_table(path: Path, n: int = 20, seed: int = 0, split: bool = False) -> Path:
    """Columns a, b, c (floats), label (0/1 = a > 0), grp; optional split column."""
    rng = np.random.default_rng(seed)
    lines = ["a,b,c,label,grp" + (",part" if split else "")]
    for i in range(n):
        a, b, c = rng.normal(size=3)
        y = int(a > 0) if i >= 2 else i  # both classes present
        row = [f"{a:.4f}", f"{b:.4f}", f"{c:.4f}", str(y), str(i % 3)]
        if split:
            row.append(("train", "train", "val", "test")[i % 4])
        lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n")
    return path
