"""Patch embedding (Dosovitskiy et al. 2020, https://arxiv.org/abs/2010.11929, sec. 3.1): the image is cut into
non-overlapping P x P patches, each flattened and linearly projected to D. A Conv2d with kernel = stride = P is
that projection (timm's ``PatchEmbed.proj``, Hugging Face's ``patch_embeddings.projection``), so the weights
load unchanged from either.
"""

from __future__ import annotations

from torch import Tensor, nn


def _pair(size: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {size!r}")
    return pair  # type: ignore[return-value]


class PatchEmbedding(nn.Module):
    """Non-overlapping patches -> D-dimensional tokens laid out on the patch grid.

    Args:
        in_channels: image channels C.
        embed_dim: token width D.
        patch_size: patch side P (or (Ph, Pw)).
        bias: whether the projection has a bias.

    The caller checks that H and W are multiples of the patch size (the model knows which sizes it can take,
    and says so in its error); a remainder would be silently dropped by the convolution.
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int | tuple[int, int], bias: bool = True) -> None:
        super().__init__()
        self.patch_size = _pair(patch_size, "patch_size")
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=self.patch_size, stride=self.patch_size, bias=bias)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (Gh, Gw) of an H x W image."""
        return height // self.patch_size[0], width // self.patch_size[1]

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) -> patch tokens on their grid (B, Gh, Gw, D), Gh = H // Ph, Gw = W // Pw."""
        return self.proj(images).permute(0, 2, 3, 1)  # (B, D, Gh, Gw) -> (B, Gh, Gw, D)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, embed_dim={self.embed_dim}, patch_size={self.patch_size}"
