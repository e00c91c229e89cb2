"""What a text model predicts when its masked tokens are replaced or removed (the audit of text models).

The masked tokens of each document (mask = 1 on annotated documents, ``Batch.effective_mask``) are

- ``random``:  replaced by words drawn uniformly from the vocabulary (ids 2 .. V - 1: never padding or
  ``<unk>``) with a ``torch.Generator``, ``draws`` times (the numbers are averaged over the draws);
- ``unk``:     replaced by the unknown word ``<unk>`` (id 1);
- ``removed``: deleted, the tokens after them shifted left (padding at the end), as if cut from the text.

flip rate = the share of documents whose predicted class changes; accuracy = on the changed documents.
Masked tokens are replaced by other tokens, never perturbed in embedding space: a point between word
embeddings is no text, and embeddings have no finite range to draw noise from.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..data.dataset import capped_batch_size
from ..data.text.embedded import is_text_dataset
from ..data.text.tokenizer import PAD, UNK
from ..devices import model_device
from ..errors import UserError
from ..models.text import is_text_model
from ..ops.modes import eval_mode
from .logits import check_logits, checked_outputs

KINDS = ("random", "unk", "removed")


def remove_tokens(ids: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """(B, L) token ids with the tokens where ``drop`` (B, L) is True deleted and the rest shifted left, in
    order, padded with 0 at the end."""
    length = ids.shape[1]
    keep = (ids != PAD) & ~drop.bool()
    position = torch.arange(length, device=ids.device).expand_as(ids)
    order = torch.argsort((~keep).long() * length + position, dim=1)  # kept tokens first, in their order
    shifted = ids.gather(1, order)
    return torch.where(position < keep.sum(1, keepdim=True), shifted, torch.zeros_like(shifted))


def replace_tokens(ids: torch.Tensor, mask: torch.Tensor, kind: str, vocab_size: int,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``ids`` (B, L) with the tokens where ``mask`` is set replaced as ``kind`` says (see the module docstring);
    ``random`` draws ids in [2, ``vocab_size``) on the CPU from ``generator`` (the same on every device)."""
    mask = mask.bool() & (ids != PAD)
    if kind == "removed":
        return remove_tokens(ids, mask)
    if kind == "unk":
        return torch.where(mask, torch.full_like(ids, UNK), ids)
    if kind == "random":
        if vocab_size <= 2:
            raise UserError("token replacement: the vocabulary has no words besides <pad> and <unk> to draw from")
        draws = torch.randint(2, vocab_size, tuple(ids.shape), generator=generator).to(ids.device)
        return torch.where(mask, draws, ids)
    raise UserError(f"token replacement: unknown kind {kind!r}; known: {', '.join(KINDS)}")


def token_replacement(model: nn.Module, dataset, draws: int = 5, generator: Optional[torch.Generator] = None,
                      batch_size: int = 500) -> dict:
    """Accuracy and flip rate of a text ``model`` on the text ``dataset`` with its masked tokens replaced at
    random (``draws`` draws from ``generator``, default seeded with 0), by ``<unk>`` and removed; also the
    clean ``accuracy``, the number of ``documents``, ``tokens`` and ``masked_tokens``. Eval mode, restored."""
    if not (is_text_model(model) and is_text_dataset(dataset)):
        raise UserError("token replacement: needs a text model (text-bag, text-cnn, text-transformer) on text data")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise UserError(f"token replacement: draws must be an integer >= 1, got {draws!r}")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    where = f"dataset {dataset.name!r} with its masked tokens replaced"
    size = capped_batch_size(dataset, batch_size)
    device = model_device(model)
    vocab_size = len(dataset.vocab)

    def predictions(kind: Optional[str]) -> torch.Tensor:
        preds = []
        for batch in dataset.batches(size):
            ids = batch.x.to(device)
            if kind is not None:
                ids = replace_tokens(ids, batch.effective_mask.to(device), kind, vocab_size, generator)
            preds.append(check_logits(model(ids), dataset.num_classes, where, len(batch)).argmax(1).cpu())
        return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)

    y = dataset.y
    n = len(dataset)

    def share(flags: torch.Tensor) -> float:
        return flags.float().mean().item() if n else math.nan

    with checked_outputs(model, dataset.num_classes, where), eval_mode(model), torch.no_grad():
        clean = predictions(None)
        out = {"documents": n, "tokens": int((dataset.ids != PAD).sum()),
               "masked_tokens": int((dataset.mask & dataset.has_mask[:, None]).sum()),
               "accuracy": share(clean == y), "random_draws": draws}
        for kind in KINDS:
            runs = [predictions(kind) for _ in range(draws if kind == "random" else 1)]
            out[f"{kind}_accuracy"] = sum(share(p == y) for p in runs) / len(runs)
            out[f"{kind}_flip_rate"] = sum(share(p != clean) for p in runs) / len(runs)
    return out
