"""timm's weight init for vision transformers, shared by the ViT, Swin, TNT and EfficientFormer families."""

from __future__ import annotations

from torch import nn


def trunc_normal_init_(module: nn.Module, std: float = 0.02) -> None:
    """Initialises ``module`` in place as timm does: linear weights truncated N(0, std), zero biases, identity norms.

    Every ``nn.Linear`` below ``module`` (itself included), in ``module.modules()`` order, gets weights drawn from a
    normal of standard deviation ``std`` truncated to [-2, 2] and a zero bias; every ``nn.LayerNorm`` gets weight 1
    and bias 0. Other modules (convolutions, BatchNorm, embeddings) keep their PyTorch init.

    Args:
        module: the model or sub-module to initialise.
        std: standard deviation of the linear weights (before truncation).
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-2.0, b=2.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
