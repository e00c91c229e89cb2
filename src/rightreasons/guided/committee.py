"""The ``disagreement`` strategy's committee: find-another-explanation models (Ross et al. 2017) trained for
one step of the loop.

For the revealed set R of the current step (the set the current model, committee model 0, was trained on),
committee model j = 1..K is trained from scratch with the run's config (the same method, seed and settings
as the loop's steps) on the training split whose mask is A_R | B_0 | ... | B_{j-1}: A_R the true masks of
the revealed examples, B_i the top-gradient masks of committee model i on all training inputs
(:func:`..find_another.core.top_gradient_masks`: the features whose gradient of sum_k log softmax exceeds
0.67 times the example's largest, Ross et al.'s rule), with every training example marked annotated. So
each model is pushed off the features the models before it relied on. Only the revealed examples' masks
are read. The committee depends only on R, so it is trained once per revealed set.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data import DataSplits, ExplanationDataset
from ..data.dataset import capped_batch_size
from ..errors import UserError
from ..find_another.core import top_gradient_masks
from ..train.config import TrainConfig
from .steps import _revealed_dataset, _train_on, revealed_code

DEFAULT_COMMITTEE = 1
#: Ross et al.'s top-gradient rule: features above this share of the example's largest |gradient|
THRESHOLD = 0.67
#: what the top-gradient masks differentiate
TARGET = "log_prob_sum"


@dataclass
class CommitteeMember:
    """Committee model ``index`` (1..K): the model, the mask it was trained with (bool, shape of the training
    inputs), its test metrics and training seconds."""

    index: int
    model: nn.Module
    train_mask: torch.Tensor
    metrics: dict
    train_seconds: float


def check_committee(committee) -> int:
    """``committee`` as an int, refused unless it is an integer >= 1."""
    if isinstance(committee, bool) or not isinstance(committee, (int, np.integer)) or committee < 1:
        raise UserError(f"guided: committee must be an integer >= 1, got {committee!r}")
    return int(committee)


def _committee_dataset(train: ExplanationDataset, mask: torch.Tensor) -> ExplanationDataset:
    """The training split with ``mask`` as every example's mask and every example annotated."""
    out = copy.copy(train)
    out.has_mask = torch.ones(len(train), dtype=torch.bool)
    out.mask = mask
    return out


def train_committee(config: TrainConfig, data: DataSplits, revealed: torch.Tensor, model: nn.Module, size: int,
                    what: str = "committee", log=None, progress: bool = False,
                    batch_size: int = 1000) -> list[CommitteeMember]:
    """Committee models 1..``size`` for the revealed set ``revealed`` (bool over the training examples), whose
    model 0 is ``model`` (trained on that set); see the module docstring. Each training is logged as
    ``"<what>, model j/K: ..."`` (its test worst-group accuracy last)."""
    size = check_committee(size)
    train = data.train
    batch_size = capped_batch_size(train, batch_size)
    mask = _revealed_dataset(train, revealed).mask
    top = top_gradient_masks(model, train.x, THRESHOLD, TARGET, batch_size=batch_size)
    members = []
    for index in range(1, size + 1):
        mask = mask | top
        name = f"{what}, model {index}/{size}"
        start = time.perf_counter()
        member_log = None if log is None else (lambda line, name=name: log(f"{name}: {line}"))
        trained, metrics, seconds = _train_on(config, data, _committee_dataset(train, mask), member_log, progress)
        if log is not None:
            log(f"{name}: worst-group {metrics['worst_group_accuracy']:.3f}, trained penalising "
                f"{mask.float().mean().item():.1%} of the training features ({time.perf_counter() - start:.0f} s)")
        members.append(CommitteeMember(index, trained, mask, metrics, seconds))
        if index < size:
            top = top_gradient_masks(trained, train.x, THRESHOLD, TARGET, batch_size=batch_size)
    return members


def _cached_committee(cache: dict, config: TrainConfig, data: DataSplits, revealed: torch.Tensor, model: nn.Module,
                      size: int, what: str, log, progress) -> list[nn.Module]:
    """The models of :func:`train_committee` for the ``revealed`` set, trained once per set (``model`` must be
    the step's model for that set, so the committee depends only on the set). Only the models are kept: a
    training mask is as large as the training inputs."""
    code = revealed_code(revealed)
    if code not in cache:
        cache[code] = [member.model for member in train_committee(config, data, revealed, model, size, what, log,
                                                                  progress)]
    return cache[code]
