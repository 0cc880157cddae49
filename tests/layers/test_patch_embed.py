from __future__ import annotations

import pytest
import torch

from formers.layers import PatchEmbedding


def test_grid_shape_and_values_match_flattened_patch_projection():
    torch.manual_seed(0)
    embed = PatchEmbedding(in_channels=3, embed_dim=8, patch_size=4)
    images = torch.randn(2, 3, 8, 12)
    grid = embed(images)
    assert grid.shape == (2, 2, 3, 8)
    assert embed.grid_size(8, 12) == (2, 3)
    # Patch (i, j) flattened in (C, Ph, Pw) order times the projection matrix, as the paper writes it.
    patches = images.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, C, Gh, Gw, Ph, Pw)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 2, 3, 3 * 16)  # (B, Gh, Gw, C*Ph*Pw)
    expected = patches @ embed.proj.weight.reshape(8, -1).T + embed.proj.bias
    torch.testing.assert_close(grid, expected, atol=1e-5, rtol=1e-5)


def test_rectangular_patches_and_no_bias():
    embed = PatchEmbedding(in_channels=1, embed_dim=4, patch_size=(2, 4), bias=False)
    assert embed.proj.bias is None
    assert embed(torch.randn(1, 1, 6, 8)).shape == (1, 3, 2, 4)


@pytest.mark.parametrize("bad", [0, (4,), (4, -1), 2.5])
def test_bad_patch_size_is_rejected(bad):
    with pytest.raises(ValueError, match="patch_size"):
        PatchEmbedding(3, 8, bad)
