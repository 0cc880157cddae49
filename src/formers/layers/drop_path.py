"""Stochastic depth (Huang et al. 2016, https://arxiv.org/abs/1603.09382) as used by ViT/DeiT, Swin, TNT and
EfficientFormer: during training each sample's residual branch is dropped with probability ``p`` and the kept
ones are scaled by ``1 / (1 - p)``; in eval it is the identity. Checked against ``timm.layers.DropPath``.
"""

from __future__ import annotations

from torch import Tensor, nn


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Drops whole samples of the residual branch ``x`` (B, ...) with probability ``p`` (rescaling the rest)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)  # one draw per sample, broadcast over the rest
    mask = x.new_empty(shape).bernoulli_(keep).div_(keep)  # scale the (B, 1, ...) mask, not the whole branch
    return x * mask


class DropPath(nn.Module):
    """Module form of :func:`drop_path`."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """Per-block rates rising linearly from 0 to ``drop_path_rate`` over ``depth`` blocks (the papers' rule)."""
    if depth <= 1:
        return [0.0] * depth
    return [drop_path_rate * i / (depth - 1) for i in range(depth)]  # plain floats: works under torch.device("meta")
