from __future__ import annotations

import pytest
import torch

from formers.layers.relative_position import (
    WindowRelativePositionBias,
    relative_position_index,
)
from formers.layers.windows import shifted_window_mask


def _reference_index(wh, ww):
    """The loop form of the reference formula: (dy + wh - 1) * (2ww - 1) + (dx + ww - 1)."""
    coords = [(i, j) for i in range(wh) for j in range(ww)]
    rows = [[(a[0] - b[0] + wh - 1) * (2 * ww - 1) + (a[1] - b[1] + ww - 1) for b in coords] for a in coords]
    return torch.tensor(rows)


@pytest.mark.parametrize("ws", [(7, 7), (3, 5), (1, 1), (4, 4)])
def test_index_matches_reference(ws):
    index = relative_position_index(ws)
    assert torch.equal(index, _reference_index(*ws))
    assert index.min() == 0 and index.max() == (2 * ws[0] - 1) * (2 * ws[1] - 1) - 1


def test_index_matches_timm():
    timm_swin = pytest.importorskip("timm.models.swin_transformer")
    for ws in [(7, 7), (3, 5)]:
        assert torch.equal(relative_position_index(ws), timm_swin.get_relative_position_index(*ws))


def test_bias_gathers_the_table_with_aligned_rows():
    module = WindowRelativePositionBias(num_heads=3, window_size=(7, 7))
    assert [n for n, _ in module.named_buffers()] == ["index"] and list(module.state_dict()) == ["table"]
    bias = module()
    assert bias.shape == (1, 3, 49, 49) and bias.stride(-2) % 8 == 0 and bias.stride(-1) == 1
    index = relative_position_index((7, 7))
    expected = module.table[index].permute(2, 0, 1)  # (N, N, H) -> (H, N, N)
    torch.testing.assert_close(bias[0], expected, rtol=0, atol=0)
    assert module(torch.bfloat16).dtype == torch.bfloat16


def test_bias_with_shift_mask_per_window_and_image():
    module = WindowRelativePositionBias(num_heads=2, window_size=(4, 4))
    mask = shifted_window_mask(8, 12, (4, 4), (2, 2))  # (6, 16, 16)
    bias = module(torch.float32, mask, batch_size=3)
    assert bias.shape == (18, 2, 16, 16)
    plain = module()[0]
    for b in range(3):
        for w in range(6):
            expected = plain.masked_fill(~mask[w], float("-inf"))
            torch.testing.assert_close(bias[b * 6 + w], expected, rtol=0, atol=0)


def test_gradient_reaches_the_table():
    module = WindowRelativePositionBias(num_heads=2, window_size=(3, 3))
    mask = shifted_window_mask(6, 6, (3, 3), (1, 1))
    bias = module(None, mask, batch_size=2)
    bias.masked_fill(torch.isinf(bias), 0).sum().backward()
    grad = module.table.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
