"""A trained run's view of the folder being annotated: its prediction on every row, its saliency (the
input gradient of ``sum_k log p_k``, as :func:`rightreasons.mask_proposals.saliency` computes it) as a heat
map PNG, and the share of that saliency inside a mask (the current mask, or the proposal)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..devices import model_device
from ..errors import UserError

#: data options of a run carried over to another folder: how inputs are shaped and labels numbered
SHAPING = ("size", "channels", "normalize", "classes", "num_classes", "mask_invert", "mask_threshold")
#: data options of a run never carried over (how it was read, not what it is)
DROPPED = ("stream", "workers", "cache")


def heat_png(saliency_map: np.ndarray) -> bytes:
    """(H, W) saliency -> RGBA PNG: scaled by its 99th percentile, black-red-yellow-white, and as opaque
    as it is strong (transparent where the model hardly looks)."""
    from PIL import Image

    a = np.abs(np.asarray(saliency_map, np.float64))
    top = np.percentile(a, 99) if a.size else 0.0
    v = np.clip(a / top, 0.0, 1.0) if top > 0 else np.zeros_like(a)
    rgb = np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)
    alpha = np.clip((v - 0.1) / 0.5, 0, 1)[..., None]  # weak saliency transparent, the image shows
    rgba = np.round(np.concatenate([rgb, alpha], axis=-1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()


def share_inside(saliency_map: np.ndarray, mask: Optional[np.ndarray]) -> Optional[float]:
    """The share of ``saliency_map``'s mass (H, W) inside ``mask`` (bool, any size: resized nearest to
    the map's); None without a mask or for a map that is all zero."""
    if mask is None:
        return None
    from PIL import Image

    h, w = saliency_map.shape
    if mask.shape != (h, w):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) >= 128
    s = np.asarray(saliency_map, np.float64)
    total = s.sum()
    return float((s * mask).sum() / total) if total > 0 else None


class RunInsight:
    """Predictions and saliency of the model in ``run_dir`` on every row of the image folder ``folder``,
    computed once (the whole folder is loaded as the run's data options shape it)."""

    def __init__(self, run_dir: str | Path, folder: str | Path, trust_code: bool = False, device: str = "cpu",
                 batch_size: int = 64):
        from ..data.csv_common import SPLIT_NAMES
        from ..data.registry import load_dataset
        from ..mask_proposals import folder_rows, saliency
        from ..ops.modes import eval_mode
        from ..train.run import load_run, read_finished_run

        saved, _ = read_finished_run(run_dir)
        folder = Path(folder)
        run_data = str(saved.get("data") or "")
        options = dict(saved.get("data_options") or {}) if run_data.startswith("folder:") else {}
        same = run_data.startswith("folder:") and os.path.realpath(run_data[len("folder:"):]) == \
            os.path.realpath(folder)
        options = {k: v for k, v in options.items() if k not in DROPPED and (same or k in SHAPING)}
        seed = saved.get("seed", 0)
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else 0  # load_run checks it
        data = load_dataset(f"folder:{folder}", seed=seed, **options)
        try:
            model, config, data = load_run(run_dir, data=data, trust_code=trust_code, device=device)
        except UserError as exc:
            if run_data.startswith("folder:"):
                raise
            raise UserError(f"{exc} (the run was trained on {run_data!r}, not an image folder like {folder})") from None
        header, rows, split = folder_rows(folder, seed=config.seed, **options)
        files = [cells[header.index("file")].strip() for _, cells in rows]
        self.classes = [str(c) for c in data.info.get("classes", [])]
        self.invert = str(options.get("mask_invert", False)).lower() in ("true", "1", "yes")
        self.run = str(run_dir)
        self.method, self.model_name = config.method, config.model
        self.rows: dict = {}
        self.maps: dict = {}
        self.split_of: dict = {}
        device = model_device(model)
        for k, name in enumerate(SPLIT_NAMES):
            dataset = data.split(name)
            positions = np.flatnonzero(split == k)
            if len(positions) != len(dataset):
                raise UserError(f"{folder}: the run's data options give {len(dataset)} {name} examples but "
                                f"labels.csv has {len(positions)}; cannot match predictions to rows")
            if not len(dataset):
                continue
            maps = saliency(model, dataset, "gradient", batch_size=batch_size)
            probs, masks, ys, has = [], [], [], []
            with torch.no_grad(), eval_mode(model):
                for batch in dataset.batches(batch_size):
                    probs.append(torch.softmax(model(batch.x.to(device)).float(), 1).cpu())
                    masks.append(batch.mask.bool().any(1).cpu())
                    ys.append(batch.y.cpu())
                    has.append(batch.has_mask.cpu())
            probs_all, masks_all, ys_all, has_all = torch.cat(probs), torch.cat(masks), torch.cat(ys), torch.cat(has)
            for j, row in enumerate(positions):
                file = files[int(row)]
                p = probs_all[j]
                pred = int(p.argmax())
                m = maps[j].numpy().astype(np.float32)
                self.maps[file] = m
                self.split_of[file] = name
                share = share_inside(m, masks_all[j].numpy()) if bool(has_all[j]) else None
                self.rows[file] = {"pred": self._name(pred), "confidence": round(float(p[pred]), 4),
                                   "correct": pred == int(ys_all[j]), "share_mask": _round(share)}

    def _name(self, k: int) -> str:
        return self.classes[k] if 0 <= k < len(self.classes) else str(k)

    def heat(self, file: str) -> Optional[bytes]:
        """The heat map PNG of row ``file`` (at the data's size), or None for a row it did not see."""
        m = self.maps.get(file)
        return None if m is None else heat_png(m)

    def share(self, file: str, mask: Optional[np.ndarray]) -> Optional[float]:
        """The saliency share of row ``file`` inside ``mask`` (white = 1 as stored; inverted when the run
        reads masks with ``mask_invert``)."""
        m = self.maps.get(file)
        if m is None or mask is None:
            return None
        return _round(share_inside(m, ~mask if self.invert else mask))

    def update(self, file: str, mask: Optional[np.ndarray]) -> Optional[float]:
        """Recompute the share inside the mask of row ``file`` after a save; returns it."""
        if file in self.rows:
            self.rows[file]["share_mask"] = self.share(file, mask)
            return self.rows[file]["share_mask"]
        return None


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 4)
