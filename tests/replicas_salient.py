"""A miniature replica of the Salient ImageNet download and of the ImageNet train folder it refers to (used by
test_salient_imagenet.py): wordnet_dict.py as a Python assignment of a dict literal, per class
image_names_map.csv (one column per feature, the published form) and feature_<f>/ folders of soft masks
(JPEG or PNG, 28 x 28: the centre crop of the image), the MTurk CSV with the published columns, and small
JPEG images of several sizes under train/<wnid>/."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

#: class index -> wnid of the replica's wordnet_dict.py; the last class has no mask folder
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
#: per class with masks: feature -> spurious answers of 5 (3 is the least that makes a feature spurious)
VOTES = [{59: 0, 1696: 3, 686: 2}, {316: 1, 981: 5}, {227: 0, 564: 4}]
#: per class with masks: feature -> the images (0..5) that have a mask of it
HAS = [{59: range(6), 1696: (0, 1, 2, 3), 686: (2, 4)}, {316: range(4), 981: range(1, 6)},
       {227: range(6), 564: (0, 2, 4)}]
MASK_FORMAT = ["JPEG", "PNG", "JPEG"]
IMAGE_SHAPES = [(32, 40), (40, 32), (48, 64)]  # (H, W), cycled over the images
SIDE = 28  # mask side; with size=28 the crop is 28 x 28 and masks are not resized
LEVELS = (60, 110, 160, 210, 255)  # soft rim of a mask, outermost first
PER_CLASS = 6


def encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG"
                                                                                   else {}))
    return buf.getvalue()


def decoded(data: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode))


def soft_box(side: int, x: int, y: int, w: int, h: int) -> np.ndarray:
    """uint8 (side, side): the box filled with LEVELS, each level one pixel further in."""
    out = np.zeros((side, side), dtype=np.uint8)
    for k, level in enumerate(LEVELS):
        if w - 2 * k > 0 and h - 2 * k > 0:
            out[y + k:y + h - k, x + k:x + w - k] = level
    return out


def mask_box(i: int, feature: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the mask of ``feature`` on image ``i`` of its class."""
    return (3 * i + feature) % 12, (2 * i + feature // 7) % 14, 12 + i % 3, 10 + feature % 4


@dataclass
class ClassRecord:
    index: int
    wnid: str
    votes: dict
    images: list = field(default_factory=list)  # image names, image i at position i
    masks: dict = field(default_factory=dict)  # (image name, feature) -> uint8 mask as decoded from its file
    mask_files: dict = field(default_factory=dict)  # (image name, feature) -> path

    @property
    def spurious(self) -> list:
        return sorted(f for f, v in self.votes.items() if v >= 3)

    @property
    def core(self) -> list:
        return sorted(f for f, v in self.votes.items() if v < 3)


@dataclass
class Replica:
    images: Path  # IMAGES: holds train/<wnid>/
    masks: Path  # MASKS
    mturk: Path
    classes: list

    @property
    def spec(self) -> str:
        return f"salient-imagenet:{self.images},{self.masks}"

    def image_file(self, cls: ClassRecord, name: str) -> Path:
        return self.images / "train" / cls.wnid / f"{name}.JPEG"


def write_wordnet(path: Path, text: str | None = None) -> None:
    body = "{" + ", ".join(f"{i}: '{w}'" for i, w in enumerate(WNIDS)) + "}"
    path.write_text(text if text is not None else f"# class index -> wnid\nmapping = {body}\n")


def write_salient(root: Path, seed: int = 0) -> Replica:
    """The replica under ``root``: ``root/imagenet`` (IMAGES) and ``root/salient_imagenet_dataset`` (MASKS)."""
    rng = np.random.default_rng(seed)
    images, masks = root / "imagenet", root / "salient_imagenet_dataset"
    masks.mkdir(parents=True)
    write_wordnet(masks / "wordnet_dict.py")
    records = []
    for c, (votes, has) in enumerate(zip(VOTES, HAS)):
        rec = ClassRecord(c, WNIDS[c], votes)
        class_images = images / "train" / rec.wnid
        class_images.mkdir(parents=True)
        for i in range(PER_CLASS):
            name = f"{rec.wnid}_{1000 + 37 * i + c}"
            rec.images.append(name)
            h, w = IMAGE_SHAPES[(i + c) % len(IMAGE_SHAPES)]
            (class_images / f"{name}.JPEG").write_bytes(encode(rng.integers(60, 200, (h, w, 3)), "JPEG"))
        fmt = MASK_FORMAT[c]
        columns = {}
        for feature, which in has.items():
            folder = masks / rec.wnid / f"feature_{feature}"
            folder.mkdir(parents=True)
            columns[feature] = [rec.images[i] for i in which]
            for i in which:
                name = rec.images[i]
                data = encode(soft_box(SIDE, *mask_box(i, feature)), fmt)
                path = folder / f"{name}.{'JPEG' if fmt == 'JPEG' else 'png'}"
                path.write_bytes(data)
                rec.masks[name, feature] = decoded(data, "L")
                rec.mask_files[name, feature] = path
        write_map(masks / rec.wnid / "image_names_map.csv", columns)
        records.append(rec)
    mturk = masks / "discover_spurious_features.csv"
    write_mturk(mturk, records)
    return Replica(images, masks, mturk, records)


def write_map(path: Path, columns: dict) -> None:
    """image_names_map.csv in the published form: one column per feature, shorter columns padded with ''."""
    feats = list(columns)
    depth = max(len(v) for v in columns.values())
    lines = [",".join(str(f) for f in feats)]
    for r in range(depth):
        lines.append(",".join(columns[f][r] if r < len(columns[f]) else "" for f in feats))
    path.write_text("\n".join(lines) + "\n")


def write_long_map(path: Path, rec: ClassRecord, order=("image", "mask")) -> None:
    """image_names_map.csv as two columns ``image`` and ``mask`` in ``order``."""
    lines = [",".join(order)]
    for (name, feature), file in sorted(rec.mask_files.items()):
        cells = {"image": name, "mask": f"feature_{feature}/{file.name}"}
        lines.append(",".join(cells[c] for c in order))
    path.write_text("\n".join(lines) + "\n")


MTURK_HEADER = ("WorkerId,Input.wordnet_id,Input.class_index,Input.feature_index,Input.feature_rank,Answer.main,"
                "Answer.confidence,Answer.reasons")


def mturk_lines(records) -> list[str]:
    """Five answers per (class, feature), the first ``votes`` of them spurious; plus a class without masks."""
    lines = [MTURK_HEADER]
    table = [(r.index, r.wnid, r.votes) for r in records] + [(3, WNIDS[3], {686: 1, 1697: 4})]
    spurious_kinds = ("separate_object", "background")
    for index, wnid, votes in table:
        for rank, (feature, v) in enumerate(votes.items(), 1):
            for worker in range(5):
                answer = spurious_kinds[worker % 2] if worker < v else "main_object"
                lines.append(f"{20 + worker},{wnid},{index},{feature},{rank},{answer},4.0,\"focus is on it, mostly\"")
    return lines


def write_mturk(path: Path, records) -> None:
    path.write_text("\n".join(mturk_lines(records)) + "\n")
