"""The find-another-explanation loop (Ross et al. 2017): masks from the largest input gradients, and a
sequence of trainings each penalising the union of its predecessors' masks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors.torch import save
from torch import nn

from ..data import DataSplits, ExplanationDataset, load_dataset
from ..devices import model_device
from ..errors import UserError
from ..files import atomic_write_json
from ..methods import METHODS, create_method
from ..metrics.evaluate import evaluate
from ..metrics.wrong_reason import binarize
from ..ops.input_gradients import input_gradients
from ..ops.modes import eval_mode
from ..train.config import TrainConfig
from ..train.run import RunOutput, build_model, data_model_options, resolved_config, save_run
from ..train.trainer import fit

MASK_FILE = "train_mask.safetensors"


@dataclass
class FindAnotherModel:
    """One model of the sequence: its run (model, config, metrics), the mask it was trained with
    (bool, shape of the training inputs) and its own top-gradient mask on the training inputs."""

    index: int
    model: nn.Module
    config: TrainConfig
    metrics: dict
    train_mask: torch.Tensor
    top_mask: torch.Tensor
    data: Optional[DataSplits] = field(default=None, repr=False)


def top_gradient_masks(model: nn.Module, x: torch.Tensor, threshold: float = 0.67, target: str = "log_prob_sum",
                       y: Optional[torch.Tensor] = None, batch_size: int = 1000) -> torch.Tensor:
    """Bool mask of shape ``x.shape``: per example, the features whose input gradient (of ``target``,
    model in eval mode) exceeds ``threshold`` times the example's largest one (Ross et al.'s rule)."""
    out = []
    device = model_device(model)
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            ys = None if y is None else y[start:start + batch_size].to(device)
            grad, _ = input_gradients(model, x[start:start + batch_size].to(device), target, ys)
            out.append(binarize(grad, threshold).cpu())
    return torch.cat(out) if out else torch.zeros(x.shape, dtype=torch.bool)


def _with_mask(train: ExplanationDataset, mask: torch.Tensor, index: int) -> ExplanationDataset:
    return ExplanationDataset(train.x, train.y, mask, train.group, torch.ones(len(train), dtype=torch.bool),
                              num_classes=train.num_classes, num_groups=train.num_groups,
                              name=f"{train.name} (find-another model {index})", input_range=train.input_range)


def find_another_explanation(
    config: TrainConfig,
    data: Optional[DataSplits] = None,
    n_models: int = 3,
    threshold: float = 0.67,
    target: str = "log_prob_sum",
    log: Optional[Callable[[str], None]] = None,
    progress: bool = False,
    on_model: Optional[Callable[[FindAnotherModel], None]] = None,
) -> list[FindAnotherModel]:
    """Train ``n_models`` models in turn as ``config`` says (its method must read masks; default RRR),
    model k with the mask A_0 | B_1 | ... | B_{k-1}: the data's own training masks A_0 (where annotated)
    and the previous models' top-gradient masks B_j (:func:`top_gradient_masks`). ``on_model`` is
    called with each finished model (e.g. to save it before the next one starts)."""
    if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
        raise UserError(f"find_another: n_models must be an integer >= 1, got {n_models!r}")
    if not 0.0 <= threshold < 1.0:
        raise UserError(f"find_another: threshold must be in [0, 1), got {threshold}")
    config = resolved_config(config)
    if not METHODS.get(config.method).uses_mask:
        raise UserError(f"find_another: method {config.method!r} does not read masks; use rrr (or another mask method)")
    if data is None:
        data = load_dataset(config.data, seed=config.seed, **config.data_options)
    train = data.train
    mask = train.mask & train.has_mask.view(-1, *([1] * (train.mask.dim() - 1)))
    models: list[FindAnotherModel] = []
    for index in range(1, n_models + 1):
        if log is not None:
            log(f"find-another: model {index}/{n_models}, penalising {mask.float().mean().item():.1%} "
                "of the training features")
        splits = DataSplits(_with_mask(train, mask, index), data.val, data.test, data.info)
        model = build_model(config, data.input_shape, data.num_classes,
                            data_model_options(data, config.model_name()))
        result = fit(model, create_method(config.method, **config.params), splits, config, log=log, progress=progress)
        top = top_gradient_masks(model, train.x, threshold, target, train.y)
        metrics = {
            "test": evaluate(model, data.test, mask_share=bool(data.test.has_mask.any())),
            "val": evaluate(model, data.val, mask_share=bool(data.val.has_mask.any())),
            "train_seconds": result.train_seconds,
            "selected_epoch": result.selected_epoch,
            "history": result.history,
            "find_another": {"index": index, "n_models": n_models, "threshold": threshold, "target": target,
                             "penalised_fraction": mask.float().mean().item(),
                             "top_gradient_fraction": top.float().mean().item(), "train_mask": MASK_FILE},
        }
        item = FindAnotherModel(index, model, config, metrics, mask, top, data)
        models.append(item)
        if on_model is not None:
            on_model(item)
        mask = mask | top
    return models


def save_find_another(out: str | Path, item: FindAnotherModel) -> Path:
    """Write ``out/model-<index>`` as a run directory (model.safetensors, config.json, metrics.json)
    plus the training mask the model was penalised on (``train_mask.safetensors``, uint8), all in one
    ``save_run`` (listed in the run's manifest, replacing an older run's files only once all are written)."""
    run_dir = Path(out) / f"model-{item.index}"
    mask = save({"train_mask": item.train_mask.to(torch.uint8).contiguous()})
    save_run(run_dir, RunOutput(item.model, item.config, item.metrics, item.data), extra={MASK_FILE: mask})
    return run_dir


def summary_row(out: str | Path, item: FindAnotherModel) -> dict:
    """One row of ``report.json`` for a finished model: test accuracies, the penalised share and, on
    Toy Colors, which rule the model uses (also recorded in its metrics)."""
    from .toy_colors_rules import rule_report

    row = {"model": item.index, "dir": str(Path(out) / f"model-{item.index}"),
           "accuracy": item.metrics["test"]["accuracy"],
           "worst_group_accuracy": item.metrics["test"]["worst_group_accuracy"],
           "penalised_fraction": item.metrics["find_another"]["penalised_fraction"],
           "train_seconds": item.metrics["train_seconds"]}
    if item.config.data == "toy-colors":
        item.metrics["find_another"]["rules"] = rule_report(item.model, item.data.test, seed=item.config.seed)
        row.update(item.metrics["find_another"]["rules"])
    return row


def write_summary(out: str | Path, summary: list[dict]) -> None:
    """``out/report.json``: one row per model (metrics and, on Toy Colors, the rule it uses)."""
    atomic_write_json(Path(out) / "report.json", summary)
