"""Positional encodings: the paper's fixed sinusoids and learned position embeddings."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn


def sinusoidal_table(
    num_positions: int, embed_dim: int, layout: Literal["interleaved", "concatenated"] = "interleaved"
) -> Tensor:
    """Table (num_positions, embed_dim) of PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(...).

    ``"interleaved"`` is the paper's layout (sin in even, cos in odd columns); ``"concatenated"`` puts all
    sines first, then all cosines (Marian / tensor2tensor), with the same frequencies.
    """
    if embed_dim % 2 != 0:
        raise ValueError(f"sinusoidal positions need an even embed_dim, got {embed_dim}")
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, embed_dim, 2, dtype=torch.float64) / embed_dim)  # (D/2,)
    angles = pos * inv_freq  # (P, D/2)
    if layout == "interleaved":
        table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (P, D/2, 2) -> (P, D)
    elif layout == "concatenated":
        table = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (P, D)
    else:
        raise ValueError(f"layout must be 'interleaved' or 'concatenated', got {layout!r}")
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal positions (Vaswani et al. 2017, sec. 3.5), looked up by position index.

    Args:
        max_seq_len: number of positions in the table.
        embed_dim: D.
        layout: ``"interleaved"`` (paper) or ``"concatenated"`` (Marian).
    """

    def __init__(
        self, max_seq_len: int, embed_dim: int, layout: Literal["interleaved", "concatenated"] = "interleaved"
    ) -> None:
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_seq_len, embed_dim, layout), persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        """Positions (..., T) integer -> encodings (..., T, D)."""
        return self.table[positions]


class LearnedPositionalEmbedding(nn.Module):
    """Learned absolute position embeddings (BERT, GPT-2, ViT-style lookups).

    Args:
        max_seq_len: number of positions.
        embed_dim: D.
    """

    def __init__(self, max_seq_len: int, embed_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_seq_len, embed_dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, positions: Tensor) -> Tensor:
        """Positions (..., T) integer -> embeddings (..., T, D)."""
        return self.weight[positions]
