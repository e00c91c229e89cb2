"""The reviewable folder of proposals: a new image folder (labels.csv, images/, masks/, true_masks/,
proposals.csv) that ``rightreasons annotate --proposals`` shows and ``--data folder:DIR`` trains on."""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch

from ..errors import UserError
from ..files import atomic_write, atomic_write_text, fsync_dir, umask
from .agreement import mask_iou


def folder_rows(path: str | Path, seed: int = 0,
                **options) -> tuple[list[str], list[tuple[int, list[str]]], np.ndarray]:
    """(header, rows, split index per row) of the image folder ``path``, with the train / val / test
    assignment its loader makes for ``seed`` and ``options`` (the order of each split's examples is the
    order of its rows)."""
    from ..data.csv_common import (
        encode_labels,
        encode_splits,
        label_and_split_options,
        parse_options,
        read_csv,
        resolve_splits,
    )
    from ..data.folder import DEFAULTS as FOLDER_DEFAULTS
    from ..data.folder import LABELS_FILE

    source = f"folder:{path}"
    opts = parse_options(source, options, FOLDER_DEFAULTS)
    classes, num_classes, val_f, test_f, rng = label_and_split_options(source, opts, seed, "folder")
    csv_path = Path(path) / LABELS_FILE
    header, rows = read_csv(csv_path, "labels CSV")
    for required in ("file", "label"):
        if required not in header:
            raise UserError(f"{csv_path}: missing column {required!r} (header: {', '.join(header)})")
    numbers = [r for r, _ in rows]
    y, _ = encode_labels(csv_path, numbers, [c[header.index("label")] for _, c in rows], "label", classes,
                         num_classes)
    split_col = (encode_splits(csv_path, numbers, [c[header.index("split")] for _, c in rows], "split")
                 if "split" in header else None)
    split, _ = resolve_splits(csv_path, y, split_col, rng, val_f, test_f)
    return header, rows, split


def _is_inside(inner: Path, outer: Path) -> bool:
    return inner == outer or inner.is_relative_to(outer)


def _place_file(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to ``src`` (a copy where links are impossible), atomically."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _write_mask_png(path: Path, mask: np.ndarray, size_wh: tuple[int, int]) -> None:
    """A bool (h, w) mask as a grayscale PNG (white = ignore), resized (nearest) to ``size_wh``."""
    from PIL import Image

    img = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
    if img.size != tuple(size_wh):
        img = img.resize(tuple(size_wh), Image.NEAREST)

    def write(tmp: str) -> None:
        img.save(tmp, format="PNG")

    atomic_write(path, write)


def _csv_text(header: list[str], rows: Iterable[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _fmt(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def write_proposals(out: str | Path, dataset_folder: str | Path, splits: Iterable[str], masks: dict,
                    seed: int = 0, data_options: Optional[dict] = None, overwrite: bool = False,
                    selected: Optional[dict] = None, drop: Optional[dict] = None,
                    agreement: Optional[dict] = None) -> Path:
    """Write the image folder ``out``: the rows of ``dataset_folder/labels.csv`` (read with ``seed`` and
    ``data_options``, as the proposals' data was loaded) with images hard-linked or copied into
    ``out/images/``, an explicit ``split`` column, and as mask: for the rows of ``splits``, the proposal
    ``masks[split][i]`` (bool (1, h, w) at the data's size, written at the image's size to
    ``out/masks/``; an empty cell where ``selected[split][i]`` is False), for the other rows their source
    mask (binarised, in ``out/true_masks/``). ``out/proposals.csv`` lists, per row, the proposal, the
    source mask, their IoU, the occlusion ``drop`` and, when given, the ``agreement`` of other models
    (:mod:`.consensus`; rows of ``splits`` only). ``out`` must not exist or be empty unless
    ``overwrite``; it is built beside ``out`` and renamed into place; the source folder is only read."""
    from PIL import Image

    from ..data.csv_common import SPLIT_NAMES
    from ..data.folder import dataset_file
    from ..data.image_files import _mask

    data_options = dict(data_options or {})
    splits = tuple(splits)
    for name in splits:
        if name not in SPLIT_NAMES:
            raise UserError(f"write_proposals: unknown split {name!r}; known: {', '.join(SPLIT_NAMES)}")
        if name not in masks:
            raise UserError(f"write_proposals: no masks given for split {name!r}")
    src = Path(dataset_folder)
    out = Path(out)
    src_real, out_real = Path(os.path.realpath(src)), Path(os.path.realpath(out))
    if _is_inside(out_real, src_real) or _is_inside(src_real, out_real):
        raise UserError(f"{out}: the output folder must lie outside the source folder {src} (and not contain it)")
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise UserError(f"{out}: exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise UserError(f"{out}: already exists and is not empty; choose another --out or pass --overwrite")

    header, rows, split = folder_rows(src, seed, **data_options)
    allow_outside = str(data_options.get("allow_outside", False)).lower() in ("true", "1", "yes")
    mask_opts = {"mask_threshold": data_options.get("mask_threshold"),
                 "mask_invert": str(data_options.get("mask_invert", False)).lower() in ("true", "1", "yes")}
    csv_path = src / "labels.csv"
    positions = {i: np.flatnonzero(split == i) for i in range(len(SPLIT_NAMES))}
    for name in splits:
        expected = len(positions[SPLIT_NAMES.index(name)])
        if len(masks[name]) != expected:
            raise UserError(f"write_proposals: {len(masks[name])} masks for split {name!r} but {src} has {expected} "
                            f"{name} rows (seed {seed}, data options {data_options})")
    where_in_split = {}
    for idx in positions.values():
        for k, row in enumerate(idx):
            where_in_split[int(row)] = k

    col = {c: header.index(c) for c in header}
    names = [cells[col["file"]] for _, cells in rows]
    basenames = [Path(n).name for n in names]
    unique = len(set(basenames)) == len(basenames)
    out_header = header if "split" in header else [*header, "split"]
    if "mask" not in out_header:
        out_header = [*out_header, "mask"]

    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    try:
        out_rows, report = [], []
        for j, (row, cells) in enumerate(rows):
            split_name = SPLIT_NAMES[int(split[j])]
            base = basenames[j] if unique else f"{j:06d}_{basenames[j]}"
            image_real = dataset_file(src_real, csv_path, row, "file", names[j], allow_outside)
            image_rel = f"images/{base}"
            _place_file(image_real, stage / image_rel)
            with Image.open(image_real) as im:
                size_wh = im.size
            true_name = cells[col["mask"]] if "mask" in col else ""
            true_rel = ""
            true_np = None
            if true_name:
                mask_real = dataset_file(src_real, csv_path, row, "mask", true_name, allow_outside)
                true_np = _mask(mask_real, f"{src / true_name} (labels.csv row {row})", (size_wh[1], size_wh[0]),
                                mask_opts)
                true_rel = f"true_masks/{Path(base).stem}.png"
                _write_mask_png(stage / true_rel, true_np, size_wh)
            mask_rel, iou_text, drop_text, agreement_text, proposed = true_rel, "", "", "", ""
            if split_name in splits:
                k = where_in_split[j]
                m = torch.as_tensor(masks[split_name][k]).bool()
                m = (m.any(0) if m.dim() == 3 else m).cpu().numpy()
                keep = bool(selected[split_name][k]) if selected is not None else bool(m.any())
                mask_rel = ""
                if keep:
                    mask_rel = f"masks/{Path(base).stem}.png"
                    _write_mask_png(stage / mask_rel, m, size_wh)
                proposed = "1" if keep else "0"
                if drop is not None:
                    drop_text = _fmt(float(drop[split_name][k]))
                if agreement is not None and split_name in agreement:
                    agreement_text = _fmt(float(agreement[split_name][k]))
                if true_np is not None:
                    t = np.asarray(Image.fromarray(true_np.astype(np.uint8)).resize((m.shape[1], m.shape[0]),
                                                                                   Image.NEAREST)).astype(bool)
                    pm = m if keep else np.zeros_like(m)
                    iou_text = _fmt(float(mask_iou(torch.from_numpy(pm)[None], torch.from_numpy(t)[None])[0]))
            new = list(cells)
            new[col["file"]] = image_rel
            if "split" in col:
                new[col["split"]] = split_name
            else:
                new.append(split_name)
            if "mask" in col:
                new[col["mask"]] = mask_rel
            else:
                new.append(mask_rel)
            out_rows.append(new)
            report.append([image_rel, split_name, proposed, mask_rel if proposed == "1" else "", true_rel, iou_text,
                           drop_text] + ([agreement_text] if agreement is not None else []))
        columns = ["file", "split", "proposed", "proposal", "true_mask", "iou", "occlusion_drop"]
        atomic_write_text(stage / "proposals.csv", _csv_text(columns + (["agreement"] if agreement is not None else []),
                                                             report))
        atomic_write_text(stage / "labels.csv", _csv_text(out_header, out_rows))
        os.chmod(stage, 0o777 & ~umask())
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.rmdir(old)
            os.replace(out, old)
        os.replace(stage, out)
        fsync_dir(parent, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


def train_command(out: str | Path, data_options: Optional[dict] = None) -> str:
    """The ``rightreasons train`` command line that trains on the written folder ``out`` (with the data
    options that shape the inputs: size, channels, normalize, classes, num_classes)."""
    shaping = ("size", "channels", "normalize", "classes", "num_classes")
    parts = [f"rightreasons train --data folder:{out}"]
    for key in shaping:
        value = (data_options or {}).get(key)
        if value is not None:
            if isinstance(value, (list, tuple)):
                value = ",".join(map(str, value))
            parts.append(f"--data-option {key}={value}")
    return " ".join(parts) + " --method rrr --out RUN_DIR"
