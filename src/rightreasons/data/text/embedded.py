"""A text dataset seen through a text model's embedding: what methods and metrics read for text.

``explanation_space(model, dataset)`` returns ``(model, dataset)`` unchanged for any other model and,
for a text model (``models.text.TextClassifier``) on a :class:`TextDataset`, ``(model.body, view)``:
the view's batches are the dataset's batches embedded by the model (x of shape (B, L, D + 1), the mask
on the masked tokens' embedding values), so every metric, attack and bound runs unchanged on the body
in embedding space. The view embeds with the model's current weights, on the model's device, without
gradients.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch
from torch import nn

from ...batch import Batch
from ...devices import model_device
from ...errors import UserError
from ...models.text import TextClassifier, is_text_model
from ..dataset import BatchedDataset


def is_text_dataset(dataset) -> bool:
    return bool(getattr(dataset, "is_text", False))


class EmbeddedTextDataset(BatchedDataset):
    """``dataset``'s batches in ``model``'s embedding space (see the module docstring)."""

    input_range = (float("-inf"), float("inf"))

    def __init__(self, dataset, model: TextClassifier):
        self.dataset, self.model = dataset, model
        self.y, self.group, self.has_mask = dataset.y, dataset.group, dataset.has_mask
        self.num_classes, self.num_groups, self.name = dataset.num_classes, dataset.num_groups, dataset.name

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (*self.dataset.input_shape, self.model.dim + 1)

    def batch(self, index) -> Batch:
        return self._embedded(self.dataset.batch(index))

    def iter_batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[Batch]:
        for batch in self.dataset.iter_batches(index_batches):
            yield self._embedded(batch)

    def _embedded(self, batch: Batch) -> Batch:
        with torch.no_grad():
            return self.model.embed_batch(batch.to(model_device(self.model)))

    def subset(self, index: torch.Tensor) -> "EmbeddedTextDataset":
        return EmbeddedTextDataset(self.dataset.subset(index), self.model)


def explanation_space(model: nn.Module, dataset):
    """``(model.body, the dataset embedded)`` for a text model on text data, else ``(model, dataset)``;
    a text model on other data, or another model on text, is a one-line error."""
    text_model, text_data = is_text_model(model), is_text_dataset(dataset)
    if text_model and text_data:
        return model.body, EmbeddedTextDataset(dataset, model)
    if text_data and not isinstance(dataset, EmbeddedTextDataset):
        raise UserError(f"dataset {dataset.name!r} is text: train a text model on it (text-bag, text-cnn, "
                        "text-transformer)")
    if text_model:
        raise UserError(f"a text model needs text data, not dataset {getattr(dataset, 'name', '?')!r}")
    return model, dataset
