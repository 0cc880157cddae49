from __future__ import annotations

import pytest
import torch

from formers.layers.conv_ffn import ConvFeedForward

timm_ef = pytest.importorskip("timm.models.efficientformer")


def test_matches_timm_conv_mlp_in_eval():
    ref = timm_ef.ConvMlpWithNorm(6, hidden_features=10)
    with torch.no_grad():
        for name, t in list(ref.named_parameters()) + list(ref.named_buffers()):
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "var" in name else torch.randn_like(t))
    ours = ConvFeedForward(6, 10)
    ours.load_state_dict(ref.state_dict())  # same names: fc1, norm1, fc2, norm2
    ours.eval(), ref.eval()
    x = torch.randn(2, 6, 4, 5)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


def test_train_mode_uses_batch_statistics_and_keeps_shape():
    ffn = ConvFeedForward(4, 8, dropout=0.1).train()
    out = ffn(torch.randn(3, 4, 5, 5) * 10 + 3)
    assert out.shape == (3, 4, 5, 5)
    # the last BatchNorm (weight 1, bias 0) normalises each channel over the batch, before dropout
    ffn.dropout.p = 0.0
    out = ffn(torch.randn(3, 4, 5, 5))
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(4), rtol=0, atol=1e-5)
