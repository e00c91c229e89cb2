"""In-memory annotated datasets and their train/val/test splits."""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

import torch

from ..batch import Batch
from ..errors import DataError

#: the most classes (or groups) inferred from the labels (a larger label is a typo, not a class)
MAX_INFERRED = 100_000
#: how many missing classes a warning lists by number
SHOWN_MISSING = 10


def _count(name: str, what: str, value) -> int:
    """``num_classes`` / ``num_groups`` as given: a non-negative integer (numpy integers too, never a bool)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise DataError(f"{name}: {what} must be a non-negative integer, got {value!r}") from None
    if number < 0:
        raise DataError(f"{name}: {what} must be a non-negative integer, got {number}")
    return number


def _inferred(name: str, what: str, values: torch.Tensor, column: str, option: str) -> int:
    """The count implied by the largest of ``values`` (non-negative, checked), at most MAX_INFERRED."""
    count = int(values.max()) + 1 if len(values) else 0
    if count > MAX_INFERRED:
        raise DataError(f"{name}: largest {column} {count - 1} would mean {count} {what} (more than "
                        f"{MAX_INFERRED}); renumber them 0..K-1 or pass {option}")
    return count


def warn_missing_classes(name: str, num_classes: int, *labels, stacklevel: int = 2) -> list[int]:
    """Warn, in one line naming ``name`` and the empty classes, when integer labels from which
    ``num_classes`` was inferred (largest label + 1) leave classes without an example in any of ``labels``
    (tensors or arrays of labels, e.g. every split of a file): labels {0, 2, 5} mean six classes, three of
    them empty. Returns the empty classes. For loaders that infer the number of classes themselves."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    for y in labels:
        counts += torch.bincount(torch.as_tensor(y).long().flatten(), minlength=num_classes)[:num_classes]
    missing = torch.nonzero(counts == 0).flatten().tolist()
    if missing:
        shown = ", ".join(map(str, missing[:SHOWN_MISSING])) + (", ..." if len(missing) > SHOWN_MISSING else "")
        warnings.warn(f"{name}: the labels leave {len(missing)} of {num_classes} classes without examples "
                      f"(class {shown}); renumber the labels 0..K-1, or set num_classes if that is meant",
                      UserWarning, stacklevel=stacklevel + 1)
    return missing


#: the most input values a metric puts in one batch (16 MB of float32): metrics' default batch sizes (1000 examples)
#: are capped by it, so that evaluating 224 x 224 images does not hold gigabytes of activations at once
MAX_BATCH_VALUES = 2**22


def capped_batch_size(dataset: "BatchedDataset", batch_size: int) -> int:
    """``batch_size``, or fewer examples when a batch of them would hold more than MAX_BATCH_VALUES inputs."""
    features = 1
    for d in dataset.input_shape:
        features *= int(d)
    return max(1, min(int(batch_size), MAX_BATCH_VALUES // max(features, 1)))


class BatchedDataset:
    """What training and the metrics use of a dataset: ``len``, ``batch(index)`` and seeded minibatches.

    :class:`ExplanationDataset` holds tensors; ``data.streaming.StreamingImageDataset`` decodes its
    examples when a batch is asked for (in ``workers`` processes).
    """

    #: processes decoding batches in :meth:`iter_batches` (in-memory datasets ignore it)
    workers: int = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, index: torch.Tensor | slice) -> Batch:
        raise NotImplementedError

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

    def annotated(self, batch_size: int = 1000) -> torch.Tensor:
        """(N,) bool: the examples that are annotated (``has_mask``) with a mask that is not empty."""
        flags = [b.has_mask & b.mask.flatten(1).any(1).bool() for b in self.batches(batch_size)]
        return torch.cat(flags) if flags else torch.zeros(0, dtype=torch.bool)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: Optional[torch.Generator] = None,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Iterate over minibatches; with ``shuffle`` the order comes from ``generator`` only."""
        yield from self.iter_batches(self.index_batches(batch_size, shuffle, generator, drop_last))

    def iter_batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[Batch]:
        """The :meth:`batch` of each index tensor, in the order given."""
        for index in index_batches:
            yield self.batch(index)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)


class ExplanationDataset(BatchedDataset):
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
            num_classes = _inferred(name, "classes", y, "label", "num_classes")
            warn_missing_classes(name, num_classes, y, stacklevel=2)
        else:
            num_classes = _count(name, "num_classes", num_classes)
            if n and int(y.max()) >= num_classes:
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
        has_mask = torch.as_tensor(has_mask)
        if has_mask.shape != (n,):
            raise DataError(f"{name}: has_mask has shape {tuple(has_mask.shape)}; expected ({n},)")
        if has_mask.dtype != torch.bool and not bool(((has_mask == 0) | (has_mask == 1)).all()):
            raise DataError(f"{name}: has_mask must be binary (0/1 or bool); found other values")
        has_mask = has_mask.bool()
        if group is None:
            group = y.clone()
        group = torch.as_tensor(group)
        if group.shape != (n,) or group.is_floating_point():
            raise DataError(f"{name}: group must be integer with shape ({n},), got {group.dtype} {tuple(group.shape)}")
        if group.dtype == torch.bool:
            raise DataError(f"{name}: group must be integer group ids, got {group.dtype}")
        group = group.long()
        if n and int(group.min()) < 0:
            raise DataError(f"{name}: negative group id {int(group.min())} (example "
                            f"{int(torch.argmin(group))}); group ids are 0..num_groups-1")
        if num_groups is None:
            num_groups = _inferred(name, "groups", group, "group id", "num_groups")
        else:
            num_groups = _count(name, "num_groups", num_groups)
            if n and int(group.max()) >= num_groups:
                raise DataError(f"{name}: group id {int(group.max())} (example {int(torch.argmax(group))}) out of "
                                f"range for num_groups={num_groups}")
        self.x, self.y, self.mask, self.group, self.has_mask = x, y, mask, group, has_mask
        self.num_classes, self.num_groups = int(num_classes), int(num_groups)
        self.name = name
        try:
            low, high = (float(v) for v in input_range)
        except (TypeError, ValueError):
            raise DataError(f"{name}: input_range must be two numbers (low, high), got {input_range!r}") from None
        if not low <= high:  # also refuses NaN; an infinite end means "unbounded" (no clamp there)
            raise DataError(f"{name}: input_range must be numbers with low <= high, got ({low}, {high})")
        self.input_range = (low, high)

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

    def __post_init__(self):
        """Refuse a training split whose examples are all of one class (nothing to learn to tell apart);
        validation and test splits may lack classes (a small or limited split)."""
        train = self.train
        if not isinstance(train, ExplanationDataset) or not len(train):
            return  # a stand-in (tests); an empty training split is refused by fit
        present = torch.unique(train.y)
        if len(present) < 2:
            raise DataError(f"{train.name}: every training example has label {int(present[0])}; a classifier "
                            "needs at least two classes in the training split")

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
