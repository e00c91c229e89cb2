"""Masks from a find-another-explanation run (``--source find-another``; Ross, Hughes & Doshi-Velez,
IJCAI 2017, §4.2): ``rightreasons find-another --out RUN`` writes ``RUN/model-1``, ``RUN/model-2``, ...,
each a run directory with ``train_mask.safetensors``, the mask that model was trained with,

    A_k = A_0 | B_1 | ... | B_{k-1},   B_j = { i : |d s_j(x) / dx_i| > t * max |d s_j(x) / dx| }

(A_0 the data's own masks, ``t`` the run's threshold, ``s_j`` model j's target, both in its metrics.json),
one mask per training input and input feature. ``which="train"`` proposes A_K (read from model K's file);
``which="top"`` proposes B_K, model K's own top-gradient mask, recomputed on the training inputs. Channels
are merged (a pixel is masked when any of its channels is). The masks are stored in the order of the run's
training split, which is the order of the data's train rows, so they map onto the same data loaded with the
run's seed and data options; row counts and input shapes must agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..data import DataSplits, load_dataset
from ..errors import UserError
from ..find_another.core import MASK_FILE, top_gradient_masks
from ..train.config import TrainConfig
from ..train.run import load_run, read_finished_run
from ..train.rundir import read_run_file, verified_run
from .options import _image_shape

#: ``which`` masks of a find-another model: the one it was trained with, or its own top-gradient one
WHICH = ("train", "top")
WHERE = "find-another masks"


@dataclass
class FindAnotherProposal:
    """The masks (bool (N, 1, H, W), rows of ``data.train``) proposed from model ``index`` of ``n_models``
    of a find-another run, the model's run directory and config, and the data they map onto
    (``data_name``, loaded with ``config.seed`` and ``data_options``)."""

    masks: torch.Tensor
    index: int
    n_models: int
    model_dir: Path
    which: str
    config: TrainConfig
    data_name: str
    data_options: dict
    data: DataSplits = field(repr=False)


def find_another_models(run_dir: str | Path) -> list[Path]:
    """The model directories ``run_dir/model-1`` ... ``model-N`` that ``rightreasons find-another`` wrote
    (consecutive from 1); anything else is a one-line error saying what ``run_dir`` is."""
    root = Path(run_dir)
    expected = "the --out directory of `rightreasons find-another` (model-1/, model-2/, ...) expected"
    if not root.exists():
        raise UserError(f"{root}: no such directory ({expected})")
    if not root.is_dir():
        raise UserError(f"{root}: not a directory ({expected})")
    if (root / "config.json").exists() or (root / "model.safetensors").exists():
        raise UserError(f"{root}: a single run directory, not a find-another run ({expected}); for a run's own "
                        "saliency use --source saliency or --source teacher")
    models = []
    while (root / f"model-{len(models) + 1}").is_dir():
        models.append(root / f"model-{len(models) + 1}")
    if not models:
        others = sorted(p.name for p in root.iterdir() if re.fullmatch(r"model-\d+", p.name))
        hint = f"; it holds {', '.join(others)} but no model-1" if others else ""
        raise UserError(f"{root}: no model-1/ ({expected}){hint}")
    return models


def _record(model_dir: Path) -> dict:
    """Model ``model_dir``'s find_another record of metrics.json (checking it is a finished run)."""
    _, metrics = read_finished_run(model_dir)
    record = metrics.get("find_another")
    if not isinstance(record, dict) or not isinstance(record.get("threshold"), (int, float)) \
            or not isinstance(record.get("target"), str):
        raise UserError(f"{model_dir / 'metrics.json'}: no find_another record with threshold and target (not a "
                        "model written by `rightreasons find-another`)")
    return record


def read_train_mask(model_dir: str | Path) -> torch.Tensor:
    """Bool (N, ...) the mask find-another model ``model_dir`` was trained with (its ``train_mask.safetensors``,
    checked against the run's manifest)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    model_dir = Path(model_dir)
    path = model_dir / MASK_FILE
    if not path.is_file():
        raise UserError(f"{model_dir}: missing {MASK_FILE} (not a model written by `rightreasons find-another`)")
    data = read_run_file(model_dir, MASK_FILE, verified_run(model_dir))
    try:
        tensors = load(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: cannot read the masks ({str(exc).strip().splitlines()[0]})") from None
    mask = tensors.get("train_mask")
    if mask is None or mask.dim() < 2 or mask.dtype not in (torch.uint8, torch.bool):
        got = ", ".join(f"{k} {str(v.dtype).removeprefix('torch.')} {tuple(v.shape)}" for k, v in tensors.items())
        raise UserError(f"{path}: expected a uint8 tensor 'train_mask' of shape (N, ...), got {got or 'nothing'}")
    return mask.bool()


def _data_file(name: str) -> str:
    return str(Path(name.removeprefix("folder:")) / "labels.csv") if name.startswith("folder:") else name


def find_another_model(run_dir: str | Path, model_index: Optional[int] = None) -> tuple[int, int, Path, TrainConfig]:
    """(K, N, ``run_dir/model-K``, its config) for model ``model_index`` (1-based, default the last, N) of the
    find-another run ``run_dir``; an index out of 1..N is a one-line error."""
    models = find_another_models(run_dir)
    n = len(models)
    if model_index is None:
        model_index = n
    if isinstance(model_index, bool) or not isinstance(model_index, int) or not 1 <= model_index <= n:
        raise UserError(f"--model-index {model_index!r} is out of range: {run_dir} holds models 1..{n} "
                        f"(model-1 .. model-{n})")
    model_dir = models[model_index - 1]
    saved, _ = read_finished_run(model_dir)
    return model_index, n, model_dir, TrainConfig.from_dict(saved, where=str(model_dir / "config.json"))


def find_another_proposals(run_dir: str | Path, data: Optional[str] = None, data_options: Optional[dict] = None,
                           model_index: Optional[int] = None, which: str = "train", trust_code: bool = False,
                           device: str = "cpu", batch_size: int = 64) -> FindAnotherProposal:
    """The ``which`` mask (``train``: A_K, ``top``: B_K; see the module docstring) of model ``model_index``
    (1-based, as ``model-K``; default the last) of the find-another run ``run_dir``, for the rows of the train
    split of ``data`` (default: the model's own data) loaded with the model's seed and its data options (when
    ``data`` is its own) overridden by ``data_options``."""
    if which not in WHICH:
        raise UserError(f"{WHERE}: which must be one of {', '.join(WHICH)}, got {which!r}")
    model_index, n_models, model_dir, config = find_another_model(run_dir, model_index)
    record = _record(model_dir)
    name = data or config.data
    options = {**(config.data_options if data in (None, config.data) else {}), **(data_options or {})}
    splits = load_dataset(name, seed=config.seed, **options)
    train = splits.train
    shape = _image_shape(train)
    if which == "train":
        mask = read_train_mask(model_dir)
        if len(mask) != len(train) or tuple(mask.shape[1:]) != shape:
            raise UserError(f"{model_dir / MASK_FILE} holds masks of {len(mask)} training inputs of shape "
                            f"{tuple(mask.shape[1:])}, but the train split of {_data_file(name)} has {len(train)} of "
                            f"shape {shape} (seed {config.seed}, data options {options}); use the data the "
                            "find-another run was trained on")
    else:
        model, _, _ = load_run(model_dir, data=splits, trust_code=trust_code, device=device)
        parts = [top_gradient_masks(model, b.x, float(record["threshold"]), record["target"], b.y, batch_size)
                 for b in train.batches(batch_size)]
        mask = torch.cat(parts) if parts else torch.zeros(0, *shape, dtype=torch.bool)
    return FindAnotherProposal(mask.any(1, keepdim=True), model_index, n_models, model_dir, which, config, name,
                               options, splits)
