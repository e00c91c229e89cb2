"""ISIC in Rieger et al.'s or Heo et al.'s layout, checked as ``data/isic.py`` reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError, UserError
from .. import isic
from .report import Verification
from .run import register_verifier
from .shared import check_mask, options_of, record_splits, root_ok, size_options


@register_verifier("isic")
def verify_isic(v: Verification) -> None:
    """ISIC in Rieger et al.'s or Heo et al.'s layout, as ``data/isic.py`` reads it."""
    source, opts = options_of(v, "isic", isic.DEFAULTS)
    size_options(source, opts)
    dilate_by = isic.count_option(source, "dilate", opts["dilate"], 0, isic.MAX_DILATE)
    layout = opts["layout"]
    if layout not in (None, "auto", *isic.LAYOUTS):
        raise UserError(f"{source}: option layout must be auto, rieger or heo, got {layout!r}")
    if not root_ok(v):
        return
    if layout in (None, "auto"):
        layout = "heo" if (v.root / "processed" / "patch_no_cancer_again").is_dir() else "rieger"
    split_seed = opts["split_seed"]
    split_seed = (42 if layout == "heo" else 0) if split_seed is None else \
        isic.count_option(source, "split_seed", split_seed, 0, 2**63 - 1)
    v.settings = {"layout": layout, "split_seed": split_seed, "dilate": dilate_by}

    paper = isic.HEO if layout == "heo" else isic.RIEGER
    seg_dir = v.root / "segmentation"
    seg_names = _listing(v, seg_dir, f"the patch masks of the {layout} layout ({paper})")
    folders = []
    for sub, label, group, has_segs in isic.FOLDERS[layout]:
        folder = v.root / sub
        names = _listing(v, folder, f"{isic.CLASSES[label]} images of the {layout} layout ({paper})")
        if not names and folder.is_dir():
            v.problem("malformed", folder, f"no images ({isic.GROUPS[group]} lesions expected)")
        folders.append((folder, names, label, group, has_segs))
    seg_set = set(seg_names)
    target, target_names = next((f[0], set(f[1])) for f in folders if f[4])
    malignant_dir, malignant = folders[-1][0], set(folders[-1][1])
    for name in seg_names:
        if name not in target_names:
            v.problem("malformed", seg_dir / name,
                      f"a segmentation of the malignant image {malignant_dir / name}; patches are annotated on "
                      "benign images only" if name in malignant else f"no matching image {target / name}")
    keys, groups = [], []
    for folder, names, _, group, has_segs in folders:
        for name in names:
            image = folder / name
            hw = v.check_image(image)
            seg = has_segs and name in seg_set
            if has_segs and layout == "heo" and not seg:
                v.problem("missing", seg_dir / name, f"the segmentation of {image} (every image in {folder.name} "
                                                     "has a patch mask)")
            if seg:
                check_mask(v, seg_dir / name, str(seg_dir / name), hw, mode="RGB")
            keys.append(v.key(image))
            groups.append(1 if group == 0 and seg else group)
    split = isic._split(layout, len(keys), split_seed) if keys else np.zeros(0, dtype=np.int64)
    record_splits(v, keys, split, np.array(groups), isic.GROUPS, v.root)


def _listing(v: Verification, folder: Path, what: str) -> list[str]:
    """The image names of ``folder`` as the loader lists them, or [] after recording why it cannot be listed."""
    try:
        names, skipped = isic.list_images(folder, what)
    except DataError as exc:
        v.data_error("missing" if not folder.exists() else "unreadable", exc, folder)
        return []
    if skipped:
        v.notes.append(f"{folder}: {skipped} entr{'y' if skipped == 1 else 'ies'} skipped (not images)")
    return names
