from __future__ import annotations

import pytest
import torch

from formers.layers import (
    PixelEmbedding,
    PixelToPatch,
    PixelwisePixelToPatch,
    WholeImagePixelEmbedding,
)


@pytest.mark.parametrize("patch_size,stride,grid", [(16, 4, 4), (4, 1, 4), (16, 3, 6), (7, 4, 2)])
def test_pixel_embedding_matches_unfold_then_convolve(patch_size, stride, grid):
    torch.manual_seed(0)
    embed = PixelEmbedding(2, 5, patch_size, stride)
    with torch.no_grad():
        embed.pixel_pos.normal_()
    assert embed.pixel_grid == grid and embed.num_pixels == grid * grid
    images = torch.randn(3, 2, 2 * patch_size, 3 * patch_size)
    out = embed(images)
    assert out.shape == (3 * 6, grid * grid, 5)
    # reference: cut each patch out (row-major over the grid), convolve it alone, add positions, flatten
    patches = torch.nn.functional.unfold(images, patch_size, stride=patch_size)  # (B, C*P*P, N)
    patches = patches.transpose(1, 2).reshape(-1, 2, patch_size, patch_size)  # (B*N, C, P, P)
    expected = (embed.proj(patches) + embed.pixel_pos).flatten(2).transpose(1, 2)  # (B*N, n*n, c)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)


def test_pixel_to_patch_folds_each_patch():
    torch.manual_seed(0)
    fold = PixelToPatch(4 * 3, 6, bias=False)
    assert fold.proj.bias is None
    pixels = torch.randn(2 * 5, 4, 3)  # (B*N, n*n, c)
    out = fold(pixels, 5)
    assert out.shape == (2, 5, 6)
    expected = fold.norm2(fold.proj(fold.norm1(pixels[7].reshape(-1))))  # image 1, patch 2
    torch.testing.assert_close(out[1, 2], expected)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="stride must be a positive int"):
        PixelEmbedding(3, 8, 16, 0)
    with pytest.raises(ValueError, match="patch_size"):
        PixelEmbedding(3, 8, 16.0, 4)


def test_whole_image_pixel_embedding_convolves_then_cuts():
    torch.manual_seed(0)
    embed = WholeImagePixelEmbedding(2, 5, 8, 2)
    with torch.no_grad():
        embed.pixel_pos.normal_()
    images = torch.randn(3, 2, 16, 24)
    out = embed(images)
    assert out.shape == (3 * 6, 16, 5)
    features = embed.proj(images)  # (B, c, 8, 12)
    blocks = torch.nn.functional.unfold(features, 4, stride=4)  # (B, c*4*4, N): timm's legacy unfold
    expected = blocks.transpose(1, 2).reshape(-1, 5, 4, 4) + embed.pixel_pos  # (B*N, c, n, n)
    torch.testing.assert_close(out, expected.flatten(2).transpose(1, 2), atol=1e-6, rtol=1e-6)


def test_pixelwise_fold_normalises_each_pixel():
    torch.manual_seed(0)
    fold = PixelwisePixelToPatch(3, 4, 6)
    pixels = torch.randn(2 * 5, 4, 3)
    out = fold(pixels, 5)
    assert out.shape == (2, 5, 6) and fold.proj.bias is not None
    torch.testing.assert_close(out[1, 2], fold.proj(fold.norm1(pixels[7]).reshape(-1)))
