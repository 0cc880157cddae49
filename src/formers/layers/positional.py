"""Positional encodings: the paper's fixed sinusoids, learned position embeddings and DETR's 2-D sines."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
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


def resample_grid_positions(
    table: Tensor,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    antialias: bool = True,
) -> Tensor:
    """Resamples learned 2-D position embeddings to another patch grid by bicubic interpolation.

    What ViT does to fine-tune or run at a new resolution (Dosovitskiy et al. 2020, sec. 3.2). With
    ``antialias=True`` it matches timm's ``resample_abs_pos_embed`` (its default); with ``antialias=False``
    Hugging Face's ``interpolate_pos_encoding`` (plain bicubic, ``align_corners=False``). The two differ even
    when upsampling: PyTorch's antialiased bicubic uses the PIL kernel (a = -0.5), the plain one a = -0.75.
    Computed in float32 and cast back to the table's dtype.

    Args:
        table: (..., Gh * Gw, D) embeddings of the patch positions, row-major over the old grid (no class token).
        old_grid: (Gh, Gw) of ``table``.
        new_grid: (Nh, Nw) wanted.
        antialias: timm's (True) or Hugging Face's (False) interpolation.

    Returns:
        (..., Nh * Nw, D); ``table`` itself when the grids are equal.
    """
    (gh, gw), (nh, nw) = old_grid, new_grid
    if table.shape[-2] != gh * gw:
        raise ValueError(f"table has {table.shape[-2]} positions, old_grid {gh}x{gw} needs {gh * gw}")
    if nh <= 0 or nw <= 0:
        raise ValueError(f"new_grid must be positive, got {nh}x{nw}")
    if (gh, gw) == (nh, nw):
        return table
    lead, d = table.shape[:-2], table.shape[-1]
    grid = table.float().reshape(-1, gh, gw, d).permute(0, 3, 1, 2)  # (..., Gh*Gw, D) -> (N, D, Gh, Gw)
    grid = F.interpolate(grid, size=(nh, nw), mode="bicubic", align_corners=False, antialias=antialias)
    return grid.permute(0, 2, 3, 1).reshape(*lead, nh * nw, d).to(table.dtype)  # (N, D, Nh, Nw) -> (..., Nh*Nw, D)


def sine_position_grid(
    padding_mask: Tensor,
    embed_dim: int,
    temperature: float = 10000.0,
    scale: float = 2 * math.pi,
    eps: float = 1e-6,
) -> Tensor:
    """2-D sinusoidal positions of a feature map, normalised to each image's real extent (DETR's
    ``PositionEmbeddingSine(normalize=True)``, Carion et al. 2020, sec. A.4).

    Row and column indices count real cells only (a cumulative sum of the mask), are divided by the real height
    and width of their column/row and scaled to [0, ``scale``]: an image padded into a larger batch gets the
    positions it gets alone. Each coordinate is encoded by ``embed_dim / 2`` interleaved sines and cosines as in
    :func:`sinusoidal_table`; the y encoding comes first, then the x encoding.

    Args:
        padding_mask: (B, H, W) bool, True = real cell (padding at the bottom/right).
        embed_dim: D, a multiple of 4.
        temperature: base of the geometric frequency progression.
        scale: the largest (normalised) coordinate.
        eps: keeps all-padding rows/columns finite.

    Returns:
        (B, H, W, D) float32.
    """
    if embed_dim % 4 != 0:
        raise ValueError(f"2-D sine positions need embed_dim divisible by 4, got {embed_dim}")
    if padding_mask.dim() != 3:
        raise ValueError(f"padding_mask must have shape (batch, height, width), got {tuple(padding_mask.shape)}")
    half = embed_dim // 2
    real = padding_mask.float()
    y = real.cumsum(1)  # (B, H, W): 1-based row index among the real cells
    x = real.cumsum(2)  # (B, H, W)
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    index = torch.arange(half, device=padding_mask.device).float()
    freq = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / half)  # (D/2,)
    pos_x = x[..., None] / freq  # (B, H, W, D/2)
    pos_y = y[..., None] / freq  # (B, H, W, D/2)
    pos_x = torch.stack([pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()], dim=-1).flatten(3)  # (B, H, W, D/4, 2) -> (B, H, W, D/2)
    pos_y = torch.stack([pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()], dim=-1).flatten(3)  # (B, H, W, D/4, 2) -> (B, H, W, D/2)
    return torch.cat([pos_y, pos_x], dim=-1)  # (B, H, W, D)
