from __future__ import annotations

import pytest
import torch

from formers.layers.layer_scale import LayerScale, LayerScale2d

timm_layers = pytest.importorskip("timm.layers")


def test_layer_scale_matches_timm():
    ours, ref = LayerScale(6, 0.1), timm_layers.LayerScale(6, 0.1)
    ours2d, ref2d = LayerScale2d(6, 0.1), timm_layers.LayerScale2d(6, 0.1)
    with torch.no_grad():
        for a, b in ((ours, ref), (ours2d, ref2d)):
            b.gamma.normal_()
            a.gamma.copy_(b.gamma)
    x, x2d = torch.randn(2, 5, 6), torch.randn(2, 6, 3, 4)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    torch.testing.assert_close(ours2d(x2d), ref2d(x2d), rtol=0, atol=0)
    assert list(ours.state_dict()) == ["gamma"] == list(ours2d.state_dict())


def test_initial_value():
    assert torch.equal(LayerScale(3, 1e-5).gamma, torch.full((3,), 1e-5))
    assert torch.equal(LayerScale2d(3, 2.0)(torch.ones(1, 3, 2, 2)), torch.full((1, 3, 2, 2), 2.0))
