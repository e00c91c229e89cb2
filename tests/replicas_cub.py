"""Miniature replicas of the CUB-200-2011 and Waterbirds folders as they are on disk (used by test_cub.py,
test_waterbirds.py and test_spurious.py): a handful of small JPEG images, the text files in the real
formats, soft-edged segmentation PNGs, a Waterbirds metadata.csv."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

#: the 15 parts of CUB's parts/parts.txt, in its order (part id = index + 1)
PART_NAMES = ["back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
              "right eye", "right leg", "right wing", "tail", "throat"]
CLASS_FOLDERS = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross",
                 "004.Groove_billed_Ani", "005.Crested_Auklet"]
#: the soft levels of a segmentation's rim, outermost first (CUB's are multiples of 51: annotator votes)
SEG_LEVELS = (51, 102, 153, 204, 255)


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def soft_segmentation(hw, box) -> np.ndarray:
    """uint8 (H, W): the box (x, y, w, h, integers) filled with SEG_LEVELS, each level one pixel further in."""
    seg = np.zeros(hw, dtype=np.uint8)
    x, y, w, h = (int(v) for v in box)
    for k, level in enumerate(SEG_LEVELS):
        if w - 2 * k > 0 and h - 2 * k > 0:
            seg[y + k:y + h - k, x + k:x + w - k] = level
    return seg


@dataclass
class Record:
    """One replica image: id, path under images/, class id (1-based), train flag, box (x, y, w, h), parts
    {part id: (x, y, visible)}, its segmentation (uint8) and its size."""

    id: int
    rel: str
    cls: int
    train: bool
    box: tuple
    parts: dict = field(default_factory=dict)
    seg: np.ndarray | None = None
    hw: tuple = (32, 40)


def write_cub(root: Path, classes: int = 3, per_class: int = 6, test_per_class: int = 2, hw=(32, 40),
              seed: int = 0, segmentations: bool = True) -> list[Record]:
    """A CUB_200_2011 folder under ``root``: ``classes`` classes of ``per_class`` images, the last
    ``test_per_class`` of each class in the test split. Image i (1-based) has the box
    (4 + i % 5, 2 + i % 3, 16 + i % 4, 12); part p is at (2 + 2p, 3 + p % 9), visible unless (i + p) % 4 == 0."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    records, i = [], 0
    for c in range(1, classes + 1):
        folder = CLASS_FOLDERS[c - 1]
        for k in range(per_class):
            i += 1
            stem = f"{folder.split('.', 1)[1]}_{i:04d}_{1000 + i}"
            box = (float(4 + i % 5), float(2 + i % 3), float(16 + i % 4), 12.0)
            parts = {p: (float(2 + 2 * p), float(3 + p % 9), int((i + p) % 4 != 0)) for p in range(1, 16)}
            records.append(Record(i, f"{folder}/{stem}.jpg", c, k < per_class - test_per_class, box, parts,
                                  soft_segmentation(hw, box), hw))
    for r in records:
        (root / "images" / r.rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(60, 200, (*r.hw, 3)) // 4 * 4 + 10 * r.cls
        (root / "images" / r.rel).write_bytes(encode(pixels, "JPEG"))
        if segmentations:
            seg = root / "segmentations" / Path(r.rel).with_suffix(".png")
            seg.parent.mkdir(parents=True, exist_ok=True)
            seg.write_bytes(encode(r.seg))
    write_lines(root / "images.txt", [f"{r.id} {r.rel}" for r in records])
    write_lines(root / "image_class_labels.txt", [f"{r.id} {r.cls}" for r in records])
    write_lines(root / "train_test_split.txt", [f"{r.id} {int(r.train)}" for r in records])
    write_lines(root / "bounding_boxes.txt", [f"{r.id} " + " ".join(f"{v:.1f}" for v in r.box) for r in records])
    write_lines(root / "classes.txt", [f"{c} {CLASS_FOLDERS[c - 1]}" for c in range(1, classes + 1)])
    (root / "parts").mkdir(exist_ok=True)
    write_lines(root / "parts" / "parts.txt", [f"{p} {name}" for p, name in enumerate(PART_NAMES, 1)])
    write_lines(root / "parts" / "part_locs.txt",
                [f"{r.id} {p} {x:.1f} {y:.1f} {v}" if v else f"{r.id} {p} 0.0 0.0 0"
                 for r in records for p, (x, y, v) in r.parts.items()])
    return records


def write_lines(path: Path, lines) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def set_line(path: Path, number: int, text: str) -> None:
    """Replace line ``number`` (1-based, as in error messages) of a text file."""
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    write_lines(path, lines)


def set_part(root: Path, image: int, part: int, x: float, y: float, visible: int) -> None:
    """Rewrite the part_locs.txt line of (``image``, ``part``)."""
    path = root / "parts" / "part_locs.txt"
    lines = path.read_text().splitlines()
    n = next(k for k, line in enumerate(lines) if line.split()[:2] == [str(image), str(part)])
    lines[n] = f"{image} {part} {x:.1f} {y:.1f} {visible}"
    write_lines(path, lines)


@dataclass
class WaterbirdRecord:
    img_id: int
    filename: str
    y: int
    split: int
    place: int
    seg: np.ndarray


def write_waterbirds(root: Path, segmentations: Path | None, n: int = 12, hw=(32, 40),
                     seed: int = 0) -> list[WaterbirdRecord]:
    """A Waterbirds folder under ``root`` (metadata.csv and the images in CUB's class folders) and, if
    ``segmentations`` is given, CUB's segmentations of its birds there. Row i (0-based) has y = i % 2,
    place = (i // 2) % 2 and split = (i // 4) % 3, so every split holds every group."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    records, lines = [], ["img_id,img_filename,y,split,place,place_filename"]
    for i in range(n):
        y, place, split = i % 2, (i // 2) % 2, (i // 4) % 3
        folder = CLASS_FOLDERS[3 * y if 3 * y < len(CLASS_FOLDERS) else 0]
        stem = f"{folder.split('.', 1)[1]}_{i + 1:04d}_{500 + i}"
        box = (4 + i % 5, 2 + i % 3, 18, 14)
        rec = WaterbirdRecord(i + 1, f"{folder}/{stem}.jpg", y, split, place, soft_segmentation(hw, box))
        (root / folder).mkdir(exist_ok=True)
        (root / rec.filename).write_bytes(encode(rng.integers(0, 256, (*hw, 3)), "JPEG"))
        if segmentations is not None:
            seg = segmentations / folder / f"{stem}.png"
            seg.parent.mkdir(parents=True, exist_ok=True)
            seg.write_bytes(encode(rec.seg))
        place_file = ("/b/bamboo_forest/", "/o/ocean/")[place] + f"{i + 1:08d}.jpg"
        lines.append(f"{rec.img_id},{rec.filename},{y},{split},{place},{place_file}")
        records.append(rec)
    write_lines(root / "metadata.csv", lines)
    return records
