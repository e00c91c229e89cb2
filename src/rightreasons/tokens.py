"""Token inputs in embedding space, shared by the text models and the bound and decomposition rules.

Embedded text is (B, L, D + 1): each token's D embedding values and, last, its token flag (1 = a token,
0 = padding). :func:`token_flags` reads the flag as ``flag > 0`` (no gradient flows to it);
:class:`TokenMean` averages the embeddings of the tokens (padding excluded), a linear map with
non-negative weights once the flags are fixed, which is what lets interval bounds and contextual
decomposition pass through it exactly.
"""

from __future__ import annotations

import torch
from torch import nn


def token_flags(x: torch.Tensor) -> torch.Tensor:
    """(B, L) 1.0 at tokens, 0.0 at padding, read from the last channel of embedded inputs (no gradient)."""
    return (x[..., -1] > 0).to(x.dtype)


def embeddings(x: torch.Tensor) -> torch.Tensor:
    """(B, L, D): the embedding values of embedded inputs (B, L, D + 1), without the token flag."""
    return x[..., :-1]


class TokenMean(nn.Module):
    """(B, L, D + 1) -> (B, D): the mean of the tokens' embeddings, sum_t f_t e_t / max(1, sum_t f_t)."""

    @staticmethod
    def pool(values: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """The flag-weighted mean over tokens of ``values`` (B, L, D) with ``flags`` (B, L)."""
        weights = flags.unsqueeze(-1)
        return (values * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(embeddings(x), token_flags(x))
