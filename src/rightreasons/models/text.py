"""Text models: an embedding followed by a body that reads embeddings, so that explanations live in
embedding space.

A :class:`TextClassifier` maps token ids (B, L) to logits in two parts: ``embed(ids)`` gives (B, L, D + 1)
floats, each token's D-dimensional embedding and, last, its token flag (1 = a token, 0 = padding); the
``body`` maps those to logits. Methods and metrics differentiate, perturb and bound the embeddings: the
body reads the flag only through ``flag > 0``, so the flag has no gradient and padding never counts as a
feature. ``embed_batch`` turns a batch of token ids with a per-token mask (1 = ignore) into a batch of
embeddings whose mask covers the D embedding values of every masked token (never the flag).

Registered bodies: ``text-bag`` (the mean of the token embeddings, then an MLP; the one text model
interval bounds and contextual decomposition pass through), ``text-cnn`` (1-D
convolutions of widths 3, 4, 5 with max-pooling over time, Kim 2014) and ``text-transformer`` (a small
pre-norm transformer encoder with learned positions, mean-pooled). Attention is computed by
``scaled_dot_product_attention``; training with a penalty on input gradients needs its math kernel (the
fused kernels have no double backward), which the trainer selects (:func:`math_attention`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..batch import Batch
from ..errors import UserError
from ..tokens import TokenMean, embeddings, token_flags
from .builtin import widths
from .registry import register_model

#: the largest embedding width and vocabulary a text model takes
MAX_DIM = 1 << 14
MAX_VOCAB = 1 << 24
#: the registered text models (each a TextClassifier)
TEXT_MODELS = ("text-bag", "text-cnn", "text-transformer")


class TextClassifier(nn.Module):
    """token ids (B, L) -> ``body(embed(ids))``; see the module docstring."""

    is_text_model = True

    def __init__(self, vocab_size: int, dim: int, body: nn.Module, embedding: Optional[nn.Module] = None):
        super().__init__()
        #: ids (B, L) -> (B, L, dim); its own ``nn.Embedding`` unless given (a pretrained model's, models.hf_text)
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0) if embedding is None else embedding
        self.body = body

    @property
    def dim(self) -> int:
        return self.embedding.embedding_dim

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L, D + 1): the embeddings of ``ids`` and the token flag."""
        if ids.dtype != torch.long:
            raise UserError(f"text model: expects token ids (a long tensor), got {ids.dtype} of shape "
                            f"{tuple(ids.shape)}; is the data text?")
        e = self.embedding(ids)
        return torch.cat([e, (ids != 0).to(e.dtype).unsqueeze(-1)], dim=-1)

    def embed_batch(self, batch: Batch) -> Batch:
        """The batch in embedding space: x (B, L, D + 1), the token mask spread over each masked token's D
        embedding values (0 on the flag). Differentiable with respect to the embedding's weights."""
        x = self.embed(batch.x)
        mask = batch.mask.to(x.dtype).unsqueeze(-1).expand(*batch.mask.shape, self.dim)
        mask = torch.cat([mask, mask.new_zeros(*batch.mask.shape, 1)], dim=-1)
        return Batch(x, batch.y, mask, batch.group, batch.has_mask)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(ids))


def is_text_model(model: nn.Module) -> bool:
    return bool(getattr(model, "is_text_model", False))


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Within the block, ``scaled_dot_product_attention`` uses its math kernel (twice differentiable)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


def bag_body(dim: int, hidden: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """mean of the token embeddings -> (Linear, ReLU) per hidden width -> Linear to the classes; a plain
    chain, so interval bounds (ibp_ex) and contextual decomposition (cdep) apply."""
    layers: list[nn.Module] = [TokenMean()]
    width = dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class CNNBody(nn.Module):
    """Convolutions over time of each width in ``kernels`` (``channels`` filters each), ReLU, max over the
    tokens (padding excluded), dropout, Linear (Kim 2014)."""

    def __init__(self, dim: int, kernels: tuple[int, ...], channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, channels, k, padding=k // 2) for k in kernels)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels * len(kernels), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flags = token_flags(x).unsqueeze(1)  # (B, 1, L)
        e = embeddings(x).transpose(1, 2) * flags  # (B, D, L); padding reads as zeros, whatever it holds
        length = e.shape[-1]
        pooled = [(F.relu(conv(e))[..., :length] * flags).amax(-1) for conv in self.convs]
        return self.head(self.dropout(torch.cat(pooled, dim=1)))


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x + attention(LN(x)), then x + MLP(LN(x)); padding keys masked."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        b, length, dim = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
        h = h + self.dropout(self.out(attended.transpose(1, 2).reshape(b, length, dim)))
        return h + self.dropout(self.mlp(self.norm2(h)))


class TransformerBody(nn.Module):
    """Learned positions added to the embeddings, ``layers`` encoder layers, LayerNorm, the mean over the
    tokens, Linear."""

    def __init__(self, dim: int, length: int, layers: int, heads: int, num_classes: int, dropout: float):
        super().__init__()
        self.positions = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flags = token_flags(x)
        h = embeddings(x) + self.positions[: x.shape[1]]
        # every query attends to the tokens; a document without tokens attends to its first position
        keys = (flags > 0) | (torch.arange(x.shape[1], device=x.device) == 0)
        keys = keys[:, None, None, :]
        for layer in self.layers:
            h = layer(h, keys)
        weights = flags.unsqueeze(-1)
        pooled = (self.norm(h) * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(pooled)


def _text_args(name: str, input_shape, vocab_size, dim) -> tuple[int, int]:
    if vocab_size is None:
        raise UserError(f"model {name!r} is a text model: train it on text data (which gives the vocabulary "
                        "size), e.g. --data decoy-bbc")
    if len(tuple(input_shape)) != 1:
        raise UserError(f"model {name!r} is a text model: it takes token sequences, not inputs of shape "
                        f"{tuple(input_shape)}")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or not 2 <= vocab_size <= MAX_VOCAB:
        raise UserError(f"model {name!r}: vocab_size must be an integer in [2, {MAX_VOCAB}], got {vocab_size!r}")
    (dim,) = widths(name, "dim", dim)
    if dim > MAX_DIM:
        raise UserError(f"model {name!r}: option dim must be at most {MAX_DIM}, got {dim}")
    return int(tuple(input_shape)[0]), dim


def _rate(name: str, dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise UserError(f"model {name!r}: option dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


@register_model("text-bag")
def text_bag(input_shape, num_classes, vocab_size=None, dim: int = 64, hidden=(64,)) -> TextClassifier:
    """Embedding-bag MLP: token embeddings of width ``dim``, their mean, hidden layers ``hidden``."""
    _, dim = _text_args("text-bag", input_shape, vocab_size, dim)
    hidden = widths("text-bag", "hidden", list(hidden) if isinstance(hidden, tuple) else hidden)
    return TextClassifier(vocab_size, dim, bag_body(dim, hidden, num_classes))


@register_model("text-cnn")
def text_cnn(input_shape, num_classes, vocab_size=None, dim: int = 64, kernels=(3, 4, 5), channels: int = 64,
             dropout: float = 0.2) -> TextClassifier:
    """1-D CNN over token embeddings (Kim 2014): filters of widths ``kernels``, ``channels`` each."""
    _, dim = _text_args("text-cnn", input_shape, vocab_size, dim)
    kernels = widths("text-cnn", "kernels", list(kernels) if isinstance(kernels, tuple) else kernels)
    (channels,) = widths("text-cnn", "channels", channels)
    return TextClassifier(vocab_size, dim, CNNBody(dim, kernels, channels, num_classes, _rate("text-cnn", dropout)))


@register_model("text-transformer")
def text_transformer(input_shape, num_classes, vocab_size=None, dim: int = 64, layers: int = 2, heads: int = 4,
                     dropout: float = 0.1) -> TextClassifier:
    """A small transformer encoder: ``layers`` pre-norm layers of width ``dim`` with ``heads`` heads."""
    length, dim = _text_args("text-transformer", input_shape, vocab_size, dim)
    (layers,) = widths("text-transformer", "layers", layers)
    (heads,) = widths("text-transformer", "heads", heads)
    if dim % heads:
        raise UserError(f"model 'text-transformer': dim {dim} is not a multiple of heads {heads}")
    return TextClassifier(vocab_size, dim, TransformerBody(dim, length, layers, heads, num_classes,
                                                           _rate("text-transformer", dropout)))
