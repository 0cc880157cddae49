"""Token embeddings (optionally scaled by sqrt(D)) and the output projection that may share their weight."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.layers.validation import check_token_ids


class TokenEmbedding(nn.Module):
    """Token lookup with range checking and optional sqrt(embed_dim) scaling (Vaswani et al. 2017, sec. 3.4).

    Args:
        vocab_size: V.
        embed_dim: D.
        padding_idx: id whose embedding starts at zero (its gradient is not masked; tying stays simple).
        scale: multiply embeddings by sqrt(D).
        name: argument name used in error messages (``"src_ids"``, ``"input_ids"``).
    """

    def __init__(
        self, vocab_size: int, embed_dim: int, padding_idx: int | None = None, scale: bool = False, name: str = "input_ids"
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.padding_idx = padding_idx
        self.scale = math.sqrt(embed_dim) if scale else 1.0
        self.name = name
        self.weight = nn.Parameter(torch.empty(vocab_size, embed_dim))
        nn.init.normal_(self.weight, std=embed_dim**-0.5)
        if padding_idx is not None:
            with torch.no_grad():
                self.weight[padding_idx].zero_()

    def forward(self, ids: Tensor, name: str | None = None) -> Tensor:
        """Ids (B, T) -> embeddings (B, T, D); ``name`` overrides the argument name used in errors."""
        check_token_ids(ids, self.vocab_size, name or self.name)
        x = F.embedding(ids, self.weight)
        return x * self.scale if self.scale != 1.0 else x


class OutputProjection(nn.Module):
    """Hidden states -> vocabulary logits, with its own weight or one shared with a ``TokenEmbedding``.

    Args:
        embed_dim: D.
        vocab_size: V.
        bias: add a learned per-token bias.
        tied_to: embedding whose (V, D) weight is shared; ``None`` gives the projection its own weight.
    """

    def __init__(self, embed_dim: int, vocab_size: int, bias: bool = False, tied_to: TokenEmbedding | None = None):
        super().__init__()
        if tied_to is not None:
            if tied_to.weight.shape != (vocab_size, embed_dim):
                raise ValueError(
                    f"cannot tie output ({vocab_size}, {embed_dim}) to embedding {tuple(tied_to.weight.shape)}"
                )
            self.weight = tied_to.weight
        else:
            self.weight = nn.Parameter(torch.empty(vocab_size, embed_dim))
            nn.init.normal_(self.weight, std=embed_dim**-0.5)
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, D) -> logits (B, T, V)."""
        return F.linear(x, self.weight, self.bias)
