"""Pooling token mixer (PoolFormer, Yu et al. 2022, https://arxiv.org/abs/2111.11418, eq. 4), used by the 4-D
MetaBlocks of EfficientFormer: each token is replaced by the average of its K x K neighbourhood minus itself
(the block's residual adds the token back). Border windows average only the pixels inside the image
(``count_include_pad=False``). Parameter-free; checked against timm's ``efficientformer.Pooling``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PoolMixer(nn.Module):
    """``avg_pool_KxK(x) - x`` over feature maps (B, C, H, W); stride 1, so the map keeps its size.

    Args:
        pool_size: the odd window side K.
    """

    def __init__(self, pool_size: int = 3) -> None:
        super().__init__()
        if pool_size < 1 or pool_size % 2 == 0:
            raise ValueError(f"pool_size must be an odd positive int (the map keeps its size), got {pool_size}")
        self.pool_size = pool_size

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        k = self.pool_size
        return F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False) - x

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}"
