"""Layer scale (CaiT, Touvron et al. 2021, https://arxiv.org/abs/2103.17239, sec. 2.2): a learned per-channel
factor on each residual branch, initialised small so that deep stacks start close to the identity. Used by
EfficientFormer's MetaBlocks; checked against timm's ``LayerScale`` / ``LayerScale2d`` (parameter ``gamma``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LayerScale(nn.Module):
    """``x * gamma`` over the last dimension of tokens (..., D).

    Args:
        dim: channels D.
        init_value: the initial value of every factor.
    """

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., D)."""
        return x * self.gamma


class LayerScale2d(nn.Module):
    """``x * gamma`` over the channels of feature maps (B, C, H, W).

    Args:
        dim: channels C.
        init_value: the initial value of every factor.
    """

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x * self.gamma[:, None, None]  # (C,) -> (C, 1, 1), broadcast over the map
