"""Pixel embedding of Transformer in Transformer (Han et al. 2021, https://arxiv.org/abs/2103.00112, sec. 2.2).

Each P x P patch of the image is a "visual sentence" whose "visual words" are its pixels: a 7x7 convolution with
stride ``s`` (zero padding 3, applied to each patch on its own, so no pixel of a neighbouring patch leaks in)
turns the patch into an ``n x n`` grid (n = ceil(P / s)) of ``inner_dim``-wide pixel tokens, and a learned pixel
position embedding shared by every patch is added. This is timm's ``PixelEmbed`` (non-legacy) with the unfold
written as one reshape + permute.

:class:`PixelToPatch` folds a patch's pixel tokens back into one patch-token update:
LayerNorm(n*n*c) -> Linear(n*n*c, D) -> LayerNorm(D), used by the stem and by every TNT block.

:class:`WholeImagePixelEmbedding` and :class:`PixelwisePixelToPatch` are the first release's versions (timm's
``tnt_s_legacy_patch16_224``): the convolution runs over the whole image and the fold normalises each pixel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PixelEmbedding(nn.Module):
    """Images -> pixel tokens of every patch, with the pixel position embedding added.

    Args:
        in_channels: image channels C.
        inner_dim: pixel-token width c.
        patch_size: patch side P.
        stride: stride s of the 7x7 convolution; each patch yields ``ceil(P / s) ** 2`` pixel tokens.

    The caller checks that H and W are multiples of P (the model knows which sizes it takes).
    """

    def __init__(self, in_channels: int, inner_dim: int, patch_size: int, stride: int = 4) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("inner_dim", inner_dim), ("patch_size", patch_size),
                            ("stride", stride)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_channels = in_channels
        self.inner_dim = inner_dim
        self.patch_size = patch_size
        self.stride = stride
        self.pixel_grid = math.ceil(patch_size / stride)  # n: the conv's output side on a P x P patch
        self.proj = nn.Conv2d(in_channels, inner_dim, kernel_size=7, padding=3, stride=stride)
        self.pixel_pos = nn.Parameter(torch.zeros(1, inner_dim, self.pixel_grid, self.pixel_grid))

    @property
    def num_pixels(self) -> int:
        """Pixel tokens per patch, n * n."""
        return self.pixel_grid * self.pixel_grid

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) -> pixel tokens (B * N, n * n, c), patches in row-major grid order (N = HW / P^2)."""
        b, c, h, w = images.shape
        p = self.patch_size
        gh, gw = h // p, w // p
        x = images.view(b, c, gh, p, gw, p)  # (B, C, Gh, P, Gw, P)
        x = x.permute(0, 2, 4, 1, 3, 5).reshape(b * gh * gw, c, p, p)  # (B*N, C, P, P): one copy
        x = self.proj(x) + self.pixel_pos  # (B*N, c, n, n)
        return x.flatten(2).transpose(1, 2)  # (B*N, c, n*n) -> (B*N, n*n, c)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, inner_dim={self.inner_dim}, patch_size={self.patch_size}, "
                f"stride={self.stride}, pixel_grid={self.pixel_grid}")


class PixelToPatch(nn.Module):
    """Folds each patch's pixel tokens into one D-wide vector: LayerNorm -> Linear -> LayerNorm.

    Args:
        pixel_width: n * n * c, the width of a patch's concatenated pixel tokens.
        embed_dim: patch-token width D.
        bias: whether the linear layer has a bias (TNT's stem has one, its blocks do not).
        layer_norm_eps: epsilon of both LayerNorms.
    """

    def __init__(self, pixel_width: int, embed_dim: int, bias: bool = True, layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(pixel_width, eps=layer_norm_eps)
        self.proj = nn.Linear(pixel_width, embed_dim, bias=bias)
        self.norm2 = nn.LayerNorm(embed_dim, eps=layer_norm_eps)

    def forward(self, pixels: Tensor, num_patches: int) -> Tensor:
        """Pixel tokens (B * N, n * n, c) -> patch vectors (B, N, D), N = ``num_patches``."""
        x = pixels.reshape(-1, num_patches, self.norm1.normalized_shape[0])  # (B*N, n*n, c) -> (B, N, n*n*c)
        return self.norm2(self.proj(self.norm1(x)))


class WholeImagePixelEmbedding(PixelEmbedding):
    """The first TNT release's pixel embedding (timm's ``legacy=True``): convolve the whole image, then cut the
    feature map into each patch's ``n x n`` pixel tokens, so pixels near a patch border see the neighbouring
    patch. Same parameters as :class:`PixelEmbedding`; ``patch_size`` must be a multiple of ``stride``.
    """

    def __init__(self, in_channels: int, inner_dim: int, patch_size: int, stride: int = 4) -> None:
        super().__init__(in_channels, inner_dim, patch_size, stride)
        if patch_size % stride:
            raise ValueError(f"patch_size ({patch_size}) must be a multiple of stride ({stride}) in the whole-image "
                             "pixel embedding, so that the feature map splits into whole patches")

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) -> pixel tokens (B * N, n * n, c), patches in row-major grid order (N = HW / P^2)."""
        b = images.shape[0]
        n, c = self.pixel_grid, self.inner_dim
        x = self.proj(images)  # (B, c, H/s, W/s)
        gh, gw = x.shape[2] // n, x.shape[3] // n
        x = x.view(b, c, gh, n, gw, n).permute(0, 2, 4, 1, 3, 5)  # (B, Gh, Gw, c, n, n)
        x = x.reshape(b * gh * gw, c, n, n) + self.pixel_pos  # (B*N, c, n, n)
        return x.flatten(2).transpose(1, 2)  # (B*N, c, n*n) -> (B*N, n*n, c)


class PixelwisePixelToPatch(nn.Module):
    """The first TNT release's fold (timm's ``legacy=True``): LayerNorm over each pixel token (width c), then one
    Linear from a patch's concatenated pixel tokens to D, with a bias and no second LayerNorm.

    Args:
        inner_dim: pixel-token width c.
        num_pixels: pixel tokens per patch, n * n.
        embed_dim: patch-token width D.
        layer_norm_eps: LayerNorm epsilon.
    """

    def __init__(self, inner_dim: int, num_pixels: int, embed_dim: int, layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(inner_dim, eps=layer_norm_eps)
        self.proj = nn.Linear(num_pixels * inner_dim, embed_dim)

    def forward(self, pixels: Tensor, num_patches: int) -> Tensor:
        """Pixel tokens (B * N, n * n, c) -> patch vectors (B, N, D), N = ``num_patches``."""
        x = self.norm1(pixels)  # (B*N, n*n, c)
        return self.proj(x.reshape(-1, num_patches, self.proj.in_features))  # (B*N, n*n, c) -> (B, N, n*n*c)
