from __future__ import annotations

import pytest
import torch

from formers.layers.pool_mixer import PoolMixer

timm_ef = pytest.importorskip("timm.models.efficientformer")


@pytest.mark.parametrize("pool_size", [1, 3, 5])
def test_matches_timm_pooling(pool_size):
    x = torch.randn(2, 4, 5, 7)
    torch.testing.assert_close(PoolMixer(pool_size)(x), timm_ef.Pooling(pool_size)(x), rtol=0, atol=1e-6)


def test_border_windows_average_only_the_image():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    out = PoolMixer(3)(x)
    assert out[0, 0, 0, 0] == (0 + 1 + 3 + 4) / 4 - 0  # corner: 4 pixels, no zero padding counted
    assert out[0, 0, 1, 1] == 0.0  # centre of a linear ramp: the mean equals the pixel


def test_even_pool_size_raises():
    with pytest.raises(ValueError, match="pool_size must be an odd"):
        PoolMixer(2)
