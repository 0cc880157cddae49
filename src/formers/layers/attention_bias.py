"""Learned attention biases over 2-D token offsets (LeViT, Graham et al. 2021, https://arxiv.org/abs/2104.01136;
EfficientFormer, Li et al. 2022, https://arxiv.org/abs/2206.01191, sec. 3.3).

Tokens lie on a fixed Gh x Gw grid. Each head learns one scalar per absolute offset ``(|dy|, |dx|)`` between a
query and a key token, a table of Gh * Gw entries per head; the (H, N, N) bias added to the attention scores
(N = Gh * Gw) gathers that table through a precomputed offset index. The index is a non-persistent buffer, so
state dicts hold only the table. Checked against timm's ``efficientformer`` ``Attention.attention_biases`` /
``attention_bias_idxs`` (same index, same biases).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def grid_offset_index(grid_h: int, grid_w: int) -> Tensor:
    """Table index of every (query, key) token pair on a ``grid_h`` x ``grid_w`` grid.

    Tokens are numbered row-major; the pair (i, j) reads entry ``|y_i - y_j| * grid_w + |x_i - x_j|``.

    Returns:
        (N, N) long tensor, N = grid_h * grid_w, values in [0, N).
    """
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"grid size must be positive, got {grid_h}x{grid_w}")
    ys, xs = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")  # (Gh, Gw) each
    pos = torch.stack([ys.flatten(), xs.flatten()])  # (2, N)
    offsets = (pos[:, :, None] - pos[:, None, :]).abs()  # (2, N, N)
    return offsets[0] * grid_w + offsets[1]  # (N, N)


class AttentionBias(nn.Module):
    """Per-head learned biases over token offsets on a fixed grid, returned as an additive (H, N, N) bias.

    Args:
        num_heads: H.
        grid_size: (Gh, Gw), the token grid the biases are learned for; N = Gh * Gw tokens.

    The table starts at zero (attention then starts unbiased), as in LeViT and EfficientFormer.
    """

    def __init__(self, num_heads: int, grid_size: tuple[int, int]) -> None:
        super().__init__()
        grid_h, grid_w = grid_size
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        self.num_heads = num_heads
        self.grid_size = (grid_h, grid_w)
        self.table = nn.Parameter(torch.zeros(num_heads, grid_h * grid_w))
        self.register_buffer("index", grid_offset_index(grid_h, grid_w), persistent=False)

    @property
    def num_tokens(self) -> int:
        """N = Gh * Gw, the token count the bias is built for."""
        return self.grid_size[0] * self.grid_size[1]

    def forward(self) -> Tensor:
        """The bias to add to the attention scores: (H, N, N), broadcast over the batch."""
        return self.table[:, self.index]  # (H, N) gathered by (N, N) -> (H, N, N)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, grid_size={self.grid_size}"
