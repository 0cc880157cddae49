"""Convolutional feed-forward network on feature maps: 1x1 conv -> BatchNorm -> GELU -> 1x1 conv -> BatchNorm
(EfficientFormer's 4-D MetaBlock MLP, Li et al. 2022, https://arxiv.org/abs/2206.01191, eq. 2). The 1x1
convolutions are the position-wise linears of the Transformer FFN applied to every pixel; the BatchNorms fold
into them at inference. Checked against timm's ``efficientformer.ConvMlpWithNorm``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConvFeedForward(nn.Module):
    """Pixel-wise FFN with batch norms over (B, C, H, W) maps.

    Args:
        embed_dim: input/output channels C.
        ffn_dim: hidden channels.
        dropout: dropout after the activation and after the second norm (timm's ``proj_drop``).
    """

    def __init__(self, embed_dim: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(embed_dim, ffn_dim, 1)
        self.norm1 = nn.BatchNorm2d(ffn_dim)
        self.fc2 = nn.Conv2d(ffn_dim, embed_dim, 1)
        self.norm2 = nn.BatchNorm2d(embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = self.dropout(F.gelu(self.norm1(self.fc1(x))))
        return self.dropout(self.norm2(self.fc2(x)))
