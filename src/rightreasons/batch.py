"""The one record that flows from datasets to methods and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .errors import UserError


@dataclass
class Batch:
    """A minibatch of annotated examples: ``Batch(x, y, mask)``, or with groups and partial annotations.

    x:        inputs, float, shape (B, ...).
    y:        integer labels, shape (B,).
    mask:     shape of x, or broadcastable to it with the same batch size (a one-channel mask (B, 1, H, W)
              covers every channel of (B, C, H, W) images); **1 marks a feature the model must not use**
              (the shortcut), 0 elsewhere.
    group:    integer group ids for group metrics, shape (B,); default: the label.
    has_mask: bool per example; False where the example carries no annotation (its mask is ignored);
              default: every example is annotated.
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    group: Optional[torch.Tensor] = None
    has_mask: Optional[torch.Tensor] = None

    def __post_init__(self):
        n = self.x.shape[0] if self.x.dim() else 0
        if self.group is None:
            self.group = self.y
        if self.has_mask is None:
            self.has_mask = torch.ones(n, dtype=torch.bool, device=self.y.device)
        if self.mask.shape != self.x.shape:
            if self.mask.dim() != self.x.dim() or self.mask.shape[:1] != self.x.shape[:1] or not all(
                    m in (1, d) for m, d in zip(self.mask.shape[1:], self.x.shape[1:])):
                raise UserError(f"mask shape {tuple(self.mask.shape)} does not match x shape {tuple(self.x.shape)} "
                                "(it may have size 1 where x has channels, e.g. (B, 1, H, W) for (B, C, H, W))")
            self.mask = self.mask.expand_as(self.x)
        for name in ("y", "group", "has_mask"):
            t = getattr(self, name)
            if t.shape != (n,):
                raise UserError(f"Batch.{name} has shape {tuple(t.shape)}; expected ({n},)")

    @property
    def effective_mask(self) -> torch.Tensor:
        """The mask with un-annotated examples zeroed (so explanation terms skip them)."""
        keep = self.has_mask.to(self.mask.dtype).view(-1, *([1] * (self.mask.dim() - 1)))
        return self.mask * keep

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, *args, **kwargs) -> "Batch":
        """A copy on another device and/or dtype, as ``Tensor.to`` takes them: a device moves every field;
        a floating-point dtype casts ``x`` and a floating-point ``mask`` (labels, groups and flags keep theirs)."""
        x = self.x.to(*args, **kwargs)
        device, non_blocking = x.device, kwargs.get("non_blocking", False)
        mask_dtype = x.dtype if self.mask.is_floating_point() and x.is_floating_point() else self.mask.dtype
        return Batch(x, self.y.to(device, non_blocking=non_blocking),
                     self.mask.to(device, dtype=mask_dtype, non_blocking=non_blocking),
                     self.group.to(device, non_blocking=non_blocking),
                     self.has_mask.to(device, non_blocking=non_blocking))
