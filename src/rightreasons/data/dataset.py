"""In-memory annotated datasets and their train/val/test splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

import torch

from ..batch import Batch
from ..errors import DataError


class ExplanationDataset:
    """Tensors of inputs, labels, masks (1 = ignore), groups and annotation flags, all of length N.

    Indexing yields ``(x, y, mask, group, has_mask)``; :meth:`batches` yields :class:`Batch` objects
    (much faster than a ``DataLoader`` for data that fits in memory). ``mask`` may be given with a
    leading dimension of 1 (one mask for every example) or per example; it is stored as ``bool``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        group: Optional[torch.Tensor] = None,
        has_mask: Optional[torch.Tensor] = None,
        *,
        num_classes: Optional[int] = None,
        num_groups: Optional[int] = None,
        name: str = "tensors",
        input_range: tuple[float, float] = (0.0, 1.0),
    ):
        x = torch.as_tensor(x)
        y = torch.as_tensor(y)
        if not x.is_floating_point():
            raise DataError(f"{name}: x must be a float tensor, got {x.dtype}")
        if x.dim() < 2:
            raise DataError(f"{name}: x must have shape (N, ...), got {tuple(x.shape)}")
        n = x.shape[0]
        if n and not bool(torch.isfinite(x).all()):
            bad = torch.nonzero(~torch.isfinite(x.reshape(n, -1)).all(1))[0].item()
            raise DataError(f"{name}: x has a NaN or infinite value (first in example {bad}); clean or impute it first")
        if y.shape != (n,):
            raise DataError(f"{name}: y has shape {tuple(y.shape)}; expected ({n},) to match x {tuple(x.shape)}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise DataError(f"{name}: y must be integer class labels, got {y.dtype}")
        y = y.long()
        if n and int(y.min()) < 0:
            raise DataError(f"{name}: negative label {int(y.min())} in y")
        if num_classes is None:
            num_classes = int(y.max()) + 1 if n else 0
        elif n and int(y.max()) >= num_classes:
            raise DataError(f"{name}: label {int(y.max())} out of range for {num_classes} classes")
        if mask is None:
            mask = torch.zeros_like(x, dtype=torch.bool)
            if has_mask is None:
                has_mask = torch.zeros(n, dtype=torch.bool)
        mask = torch.as_tensor(mask)
        if mask.shape[1:] != x.shape[1:] or mask.shape[0] not in (1, n):
            raise DataError(f"{name}: mask shape {tuple(mask.shape)} does not match x shape {tuple(x.shape)}")
        if mask.dtype != torch.bool:
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise DataError(f"{name}: mask must be binary (0/1); found other values")
            mask = mask.bool()
        mask = mask.expand_as(x) if mask.shape[0] == 1 else mask
        if has_mask is None:
            has_mask = torch.ones(n, dtype=torch.bool)
        has_mask = torch.as_tensor(has_mask).bool()
        if has_mask.shape != (n,):
            raise DataError(f"{name}: has_mask has shape {tuple(has_mask.shape)}; expected ({n},)")
        if group is None:
            group = y.clone()
        group = torch.as_tensor(group)
        if group.shape != (n,) or group.is_floating_point():
            raise DataError(f"{name}: group must be integer with shape ({n},), got {group.dtype} {tuple(group.shape)}")
        group = group.long()
        if num_groups is None:
            num_groups = int(group.max()) + 1 if n else 0
        self.x, self.y, self.mask, self.group, self.has_mask = x, y, mask, group, has_mask
        self.num_classes, self.num_groups = int(num_classes), int(num_groups)
        self.name = name
        self.input_range = (float(input_range[0]), float(input_range[1]))

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i):
        return self.x[i], self.y[i], self.mask[i], self.group[i], self.has_mask[i]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def batch(self, index: torch.Tensor | slice) -> Batch:
        """The examples at ``index`` as a :class:`Batch` (mask cast to the dtype of x)."""
        x = self.x[index]
        return Batch(x, self.y[index], self.mask[index].to(x.dtype), self.group[index], self.has_mask[index])

    def index_batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: Optional[torch.Generator] = None,
        drop_last: bool = False,
    ) -> Iterator[torch.Tensor]:
        """The example indices of each minibatch; with ``shuffle`` the order comes from ``generator`` only."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, n)
            yield order[start:end] if order is not None else torch.arange(start, end)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: Optional[torch.Generator] = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Iterate over minibatches; with ``shuffle`` the order comes from ``generator`` only."""
        for index in self.index_batches(batch_size, shuffle, generator, drop_last):
            yield self.batch(index)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

    def subset(self, index: torch.Tensor) -> "ExplanationDataset":
        return ExplanationDataset(
            self.x[index], self.y[index], self.mask[index], self.group[index], self.has_mask[index],
            num_classes=self.num_classes, num_groups=self.num_groups, name=self.name,
            input_range=self.input_range,
        )


#: the splits of every dataset, in order
SPLITS = ("train", "val", "test")


@dataclass
class DataSplits:
    """Explicit train / validation / test splits of one dataset, plus a description of how they were made."""

    train: ExplanationDataset
    val: ExplanationDataset
    test: ExplanationDataset
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.train.input_shape

    def split(self, name: str) -> ExplanationDataset:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected train, val or test")
        return getattr(self, name)
