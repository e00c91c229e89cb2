"""The one record that flows from datasets to methods and metrics."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """A minibatch of annotated examples.

    x:        inputs, float, shape (B, ...).
    y:        integer labels, shape (B,).
    mask:     same shape as x; **1 marks a feature the model must not use** (the shortcut), 0 elsewhere.
    group:    integer group ids for group metrics, shape (B,); defaults to the label.
    has_mask: bool per example; False where the example carries no annotation (its mask is all zero).
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    group: torch.Tensor
    has_mask: torch.Tensor

    def __post_init__(self):
        if self.mask.shape != self.x.shape:
            raise ValueError(f"mask shape {tuple(self.mask.shape)} does not match x shape {tuple(self.x.shape)}")
        n = self.x.shape[0]
        for name in ("y", "group", "has_mask"):
            t = getattr(self, name)
            if t.shape != (n,):
                raise ValueError(f"Batch.{name} has shape {tuple(t.shape)}; expected ({n},)")

    @property
    def effective_mask(self) -> torch.Tensor:
        """The mask with un-annotated examples zeroed (so explanation terms skip them)."""
        keep = self.has_mask.to(self.mask.dtype).view(-1, *([1] * (self.mask.dim() - 1)))
        return self.mask * keep

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, dtype: torch.dtype) -> "Batch":
        """A copy with x and mask cast to ``dtype`` (labels and groups unchanged)."""
        return Batch(self.x.to(dtype), self.y, self.mask.to(dtype), self.group, self.has_mask)
