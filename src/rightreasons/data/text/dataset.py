"""Text datasets: token sequences with a per-token mask (1 = ignore), groups and partial annotations.

A :class:`TextDataset` holds token ids (N, L), padded with 0 after each document's last token and cut
at ``max_length``; its mask never marks padding, so padding is never a feature. Batches are
``Batch(x=token ids (B, L) long, mask=(B, L) float, ...)``; a text model turns them into embeddings
(``models.text``), and ``data.text.embedded`` shows the dataset to methods and metrics in that space.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ...batch import Batch
from ...errors import DataError
from ..dataset import BatchedDataset, ExplanationDataset
from .tokenizer import PAD, Vocabulary


def _flags(name: str, what: str, value, n: int, default: bool) -> torch.Tensor:
    if value is None:
        return torch.full((n,), default, dtype=torch.bool)
    value = torch.as_tensor(value)
    if value.shape != (n,):
        raise DataError(f"{name}: {what} has shape {tuple(value.shape)}; expected ({n},)")
    return value.bool()


class TextDataset(BatchedDataset):
    """Token ids, labels, per-token masks (1 = ignore), groups, annotation flags and the words shown.

    ids:       (N, L) long, 0 = padding (only after a document's tokens), other ids < ``len(vocab)``.
    mask:      (N, L) bool, never True on padding.
    rationale: optional (N, L) bool, the tokens a person marked as the evidence (for agreement metrics).
    words:     the tokens of each document as read (before the vocabulary mapped rare ones to <unk>).
    """

    #: the inputs are token ids, not features: the text models embed them
    is_text = True
    input_range = (float("-inf"), float("inf"))

    def __init__(self, ids: torch.Tensor, y: torch.Tensor, vocab: Vocabulary, *, mask=None, group=None,
                 has_mask=None, rationale=None, words: Optional[Sequence[Sequence[str]]] = None,
                 num_classes: Optional[int] = None, num_groups: Optional[int] = None, name: str = "text",
                 class_names: Optional[Sequence[str]] = None):
        ids = torch.as_tensor(ids)
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise DataError(f"{name}: token ids must be a (N, L) long tensor, got {ids.dtype} {tuple(ids.shape)}")
        n, length = ids.shape
        if n and (int(ids.min()) < 0 or int(ids.max()) >= len(vocab)):
            raise DataError(f"{name}: token id out of range for a vocabulary of {len(vocab)}")
        real = ids != PAD
        if length > 1 and bool((~real[:, :-1] & real[:, 1:]).any()):
            row = int(torch.nonzero((~real[:, :-1] & real[:, 1:]).any(1))[0])
            raise DataError(f"{name}: document {row} has padding (id 0) before a token; padding goes at the end")
        mask = torch.zeros_like(ids, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
        if mask.shape != ids.shape:
            raise DataError(f"{name}: mask shape {tuple(mask.shape)} does not match token ids {tuple(ids.shape)}")
        if bool((mask & ~real).any()):
            raise DataError(f"{name}: the mask marks padding; masks mark tokens only")
        if rationale is not None:
            rationale = torch.as_tensor(rationale).bool()
            if rationale.shape != ids.shape:
                raise DataError(f"{name}: rationale shape {tuple(rationale.shape)} does not match token ids "
                                f"{tuple(ids.shape)}")
            rationale = rationale & real
        # labels, groups and their counts are validated as for any other dataset
        meta = ExplanationDataset(torch.zeros(n, 1), y, group=group, num_classes=num_classes,
                                  num_groups=num_groups, name=name)
        self.ids, self.mask, self.rationale = ids, mask, rationale
        self.y, self.group, self.num_classes, self.num_groups = meta.y, meta.group, meta.num_classes, meta.num_groups
        self.has_mask = _flags(name, "has_mask", has_mask, n, default=mask is not None)
        self.vocab, self.name = vocab, name
        if words is not None and len(words) != n:
            raise DataError(f"{name}: {len(words)} word lists for {n} documents")
        self.words = [list(w)[:length] for w in words] if words is not None else [
            vocab.decode(row[row != PAD].tolist()) for row in ids]
        self.class_names = list(class_names) if class_names is not None else None

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def x(self) -> torch.Tensor:
        return self.ids

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.ids.shape[1],)

    @property
    def lengths(self) -> torch.Tensor:
        """(N,) the number of tokens of each document (after the length cap)."""
        return (self.ids != PAD).sum(1)

    @property
    def model_options(self) -> dict:
        """What a text model needs to know of the data to be built: the vocabulary's size."""
        return {"vocab_size": len(self.vocab)}

    def batch(self, index: torch.Tensor | slice) -> Batch:
        return Batch(self.ids[index], self.y[index], self.mask[index].float(), self.group[index],
                     self.has_mask[index])

    def subset(self, index: torch.Tensor) -> "TextDataset":
        index = torch.as_tensor(index)
        rows = index.tolist() if index.dtype != torch.bool else torch.nonzero(index).flatten().tolist()
        return TextDataset(self.ids[index], self.y[index], self.vocab, mask=self.mask[index],
                           group=self.group[index], has_mask=self.has_mask[index],
                           rationale=None if self.rationale is None else self.rationale[index],
                           words=[self.words[i] for i in rows], num_classes=self.num_classes,
                           num_groups=self.num_groups, name=self.name, class_names=self.class_names)


def encode(documents: Sequence[Sequence[str]], vocab: Vocabulary, max_length: int) -> torch.Tensor:
    """(N, L) token ids of ``documents`` (token lists), each cut at ``max_length`` and padded with 0; L is
    the longest document's length after the cut (at least 1)."""
    if max_length < 1:
        raise DataError(f"max_length must be >= 1, got {max_length}")
    length = max(1, min(max_length, max((len(d) for d in documents), default=1)))
    ids = torch.zeros(len(documents), length, dtype=torch.long)
    for i, doc in enumerate(documents):
        row = vocab.encode(doc[:length])
        if row:
            ids[i, :len(row)] = torch.tensor(row)
    return ids


def token_mask(ids: torch.Tensor, positions: Sequence[Sequence[int]]) -> torch.Tensor:
    """(N, L) bool: True at each document's listed token positions (those beyond the length cap dropped)."""
    mask = torch.zeros_like(ids, dtype=torch.bool)
    length = ids.shape[1]
    for i, pos in enumerate(positions):
        kept = [p for p in pos if 0 <= p < length]
        if kept:
            mask[i, kept] = True
    return mask & (ids != PAD)
