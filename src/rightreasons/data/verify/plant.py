"""Heo et al.'s plant layout (split lists, images, the mask pickle), checked as ``data/plant.py`` reads it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import DataError
from .. import plant
from ..csv_common import SPLIT_NAMES, option_fraction, read_bounded, stratified_split
from .images import Bad
from .report import Verification
from .run import register_verifier
from .shared import compare_size, empty_splits, options_of, read_index, root_ok, size_options

#: the split lists in the order the loader reads them
LISTS = ("train", "test", "val")


@register_verifier("plant", cheap_load=False)
def verify_plant(v: Verification) -> None:
    """Heo et al.'s plant layout, as ``data/plant.py`` reads it (the mask pickle is loaded, the images'
    headers read and compared with their masks' sizes)."""
    source, opts = options_of(v, "plant", plant.DEFAULTS)
    fold = plant.count_option(source, "fold", opts["fold"], 0, 10**6)
    size_options(source, opts)
    val_f = option_fraction(source, "val_fraction", opts["val_fraction"])
    split_seed = plant.count_option(source, "split_seed", opts["split_seed"], 0, 2**63 - 1)
    v.settings = {"fold": fold, "val_fraction": val_f, "split_seed": split_seed}
    v.count_by = "class"
    if not root_ok(v):
        return
    data_dir, lists = v.root / "rgb_data", v.root / "rgb_dataset_splits"
    for folder in (data_dir, lists):
        if not folder.is_dir():
            v.problem("missing", folder, f"no such folder (expected the plant layout of {plant.HEO})")
    if not lists.is_dir():
        return
    seen: dict = {}
    parts: dict = {}
    for name in LISTS:
        list_path = lists / f"{name}_{fold}.txt"
        if name == "val" and not os.path.lexists(list_path):
            continue
        parts[name] = split_list(v, list_path, data_dir, seen)
    entries = [e for name in LISTS for e in parts.get(name, [])]
    split = np.array([SPLIT_NAMES.index(name) for name in LISTS for _ in parts.get(name, [])], dtype=np.int64)
    y = np.array([label for _, _, label, _, _ in entries], dtype=np.int64)
    if "val" not in parts and len(y):
        split = stratified_split(y, np.random.default_rng(split_seed), val_f, 0.0, np.where(split == 0, -1, split))
    empty_splits(v, split, lists, {"val": f"raise val_fraction or add val_{fold}.txt"})

    pickle_path = v.root / plant.MASK_FILE
    masks = read_index(v, pickle_path, "no such file (the plant masks)", plant.load_masks,
                       recorded_if_malformed=True)
    for image, stem, _, where, _ in entries:
        hw = v.check_image(image, f"{image} ({where})") if image is not None else None
        if masks is None:
            continue
        try:
            m = plant._plant_mask(masks, stem, pickle_path)
        except DataError as exc:
            v.data_error("malformed", exc, pickle_path)
            continue
        compare_size(v, f"{pickle_path} mask {stem!r}", m.shape, hw)
    del masks
    v.set_splits([e[4] for e in entries], split, y, plant.CLASSES)


def _read_list(path: Path) -> str:
    raw = read_bounded(path, "split list", plant.MAX_LIST_BYTES)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Bad("malformed", f"not UTF-8 text (byte offset {exc.start})") from None


def split_list(v: Verification, list_path: Path, data_dir: Path, seen: dict) -> list:
    """(image path or None if missing, stem, label, where, key) of each entry of a split list, problems recorded."""
    text = read_index(v, list_path, "no such file (a split list)", _read_list, kind="unreadable")
    if text is None:
        return []
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        where = f"{list_path} line {number}"
        try:
            candidates, stem, label = plant.entry_candidates(data_dir, entry, where)
        except DataError as exc:
            v.data_error("malformed", exc, where)
            continue
        if stem in seen:
            v.problem("malformed", where, f"{stem!r} is already listed ({seen[stem]})")
            continue
        seen[stem] = where
        found = next((c for c in candidates if os.path.lexists(c)), None)
        if found is None:
            v.problem("missing", candidates[0], f"no such file (listed in {where}"
                      + (", nor .jpeg, .jpg, .png)" if len(candidates) > 1 else ")"))
        out.append((found, stem, label, where, v.key(found if found is not None else candidates[0])))
    if not out and not any(p.where.startswith(str(list_path)) for p in v.problems):
        v.problem("malformed", list_path, "no entries")
    return out
