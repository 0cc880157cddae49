from __future__ import annotations

import pytest
import torch

from formers.layers import DropPath, drop_path_rates


def test_drop_path_matches_timm_draw_for_draw():
    timm_layers = pytest.importorskip("timm.layers")
    x = torch.randn(64, 5, 7)
    ours, theirs = DropPath(0.3).train(), timm_layers.DropPath(0.3).train()
    torch.manual_seed(0)
    a = ours(x)
    torch.manual_seed(0)
    b = theirs(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_drop_path_drops_whole_samples_keeps_the_mean_and_is_identity_in_eval():
    torch.manual_seed(0)
    layer = DropPath(0.25).train()
    x = torch.ones(20000, 3, 4)
    y = layer(x)
    per_sample = y.flatten(1)
    kept = per_sample[:, 0] != 0
    assert torch.all(per_sample[kept] == 1 / 0.75) and torch.all(per_sample[~kept] == 0)  # all or nothing per sample
    assert abs(kept.float().mean().item() - 0.75) < 0.015
    assert abs(y.mean().item() - 1.0) < 0.02
    assert torch.equal(layer.eval()(x), x)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0)


def test_drop_path_rates_rise_linearly_like_the_papers():
    assert drop_path_rates(0.1, 0) == [] and drop_path_rates(0.1, 1) == [0.0]
    rates = drop_path_rates(0.2, 5)
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    with torch.device("meta"):
        assert drop_path_rates(0.2, 3) == pytest.approx([0.0, 0.1, 0.2])
