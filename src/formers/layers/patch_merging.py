"""Patch merging (Swin, Liu et al. 2021, https://arxiv.org/abs/2103.14030, sec. 3.1): the downsampling between
stages. Each 2x2 group of neighbouring tokens is concatenated (4C), layer-normalised and linearly reduced to 2C.
Concatenation order (top-left, bottom-left, top-right, bottom-right) and parameter names (``norm``,
``reduction``) are those of the reference implementation, ``timm`` and Hugging Face. Odd sizes are zero-padded at
the bottom/right first, as the references do.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out_dim).

    Args:
        embed_dim: input width C.
        out_dim: output width; default 2C.
        layer_norm_eps: epsilon of the LayerNorm over the 4C concatenation.
    """

    def __init__(self, embed_dim: int, out_dim: int | None = None, layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.out_dim = 2 * embed_dim if out_dim is None else out_dim
        self.norm = nn.LayerNorm(4 * embed_dim, eps=layer_norm_eps)
        self.reduction = nn.Linear(4 * embed_dim, self.out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Merges 2x2 neighbourhoods of ``x`` (B, H, W, C); returns (B, ceil(H/2), ceil(W/2), out_dim)."""
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))  # (B, H', W', C), H' and W' even
            h, w = h + h % 2, w + w % 2
        x = x.reshape(b, h // 2, 2, w // 2, 2, c)  # (B, H/2, dy, W/2, dx, C)
        x = x.permute(0, 1, 3, 4, 2, 5).flatten(3)  # (B, H/2, W/2, dx, dy, C) -> (B, H/2, W/2, 4C)
        return self.reduction(self.norm(x))
