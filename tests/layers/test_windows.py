from __future__ import annotations

import pytest
import torch

from formers.layers.windows import (
    cyclic_shift,
    pad_to_windows,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


def _reference_mask(height, width, ws, shift):
    """The reference implementation's loop: 9 slice regions of the padded map, then windows compared pairwise."""
    img = torch.zeros(height, width)
    cnt = 0
    for h in (slice(0, -ws[0]), slice(-ws[0], -shift[0]), slice(-shift[0], None)):
        for w in (slice(0, -ws[1]), slice(-ws[1], -shift[1]), slice(-shift[1], None)):
            img[h, w] = cnt
            cnt += 1
    windows = []
    for i in range(0, height, ws[0]):
        for j in range(0, width, ws[1]):
            windows.append(img[i : i + ws[0], j : j + ws[1]].reshape(-1))
    windows = torch.stack(windows)  # (nW, N)
    return windows[:, :, None] == windows[:, None, :]


@pytest.mark.parametrize("ws", [(2, 2), (3, 2), (4, 4)])
def test_partition_layout_and_round_trip(ws):
    b, h, w, c = 2, 3 * ws[0], 2 * ws[1], 5
    x = torch.randn(b, h, w, c)
    windows = window_partition(x, ws)
    assert windows.shape == (b * 6, ws[0] * ws[1], c)
    # window k of image 1 is the k-th window in row-major order, its tokens row-major inside
    k, (wi, wj) = 6 + 3, divmod(3, 2)
    expected = x[1, wi * ws[0] : (wi + 1) * ws[0], wj * ws[1] : (wj + 1) * ws[1]].reshape(-1, c)
    torch.testing.assert_close(windows[k], expected, rtol=0, atol=0)
    torch.testing.assert_close(window_reverse(windows, ws, h, w), x, rtol=0, atol=0)


@pytest.mark.parametrize(
    "size,ws,shift",
    [((14, 14), (7, 7), (3, 3)), ((8, 12), (4, 4), (2, 2)), ((10, 15), (5, 5), (2, 2)), ((6, 9), (3, 3), (1, 1))],
)
def test_shifted_window_mask_matches_reference_loop(size, ws, shift):
    mask = shifted_window_mask(*size, ws, shift)
    ref = _reference_mask(*size, ws, shift)
    assert mask.dtype == torch.bool and mask.shape == ref.shape
    assert torch.equal(mask, ref)
    assert torch.equal(mask, mask.transpose(1, 2))
    assert mask.diagonal(dim1=1, dim2=2).all()  # every token may attend to itself
    n_cols = size[1] // ws[1]
    assert mask[0].all()  # the top-left window holds no wrapped tokens
    assert not mask[-1].all() and not mask[n_cols - 1].all()  # the right column and the corner do


def test_shifted_window_mask_rejects_partial_windows():
    with pytest.raises(ValueError, match="multiple of the window size"):
        shifted_window_mask(13, 14, (7, 7), (3, 3))


def test_pad_and_shift():
    x = torch.randn(2, 5, 6, 3)
    padded = pad_to_windows(x, (4, 4))
    assert padded.shape == (2, 8, 8, 3)
    torch.testing.assert_close(padded[:, :5, :6], x, rtol=0, atol=0)
    assert padded[:, 5:].abs().sum() == 0 and padded[:, :, 6:].abs().sum() == 0
    assert pad_to_windows(x, (5, 3)) is x
    rolled = cyclic_shift(x, (2, 1))
    torch.testing.assert_close(rolled[:, 0, 0], x[:, 2, 1], rtol=0, atol=0)
    torch.testing.assert_close(cyclic_shift(rolled, (2, 1), reverse=True), x, rtol=0, atol=0)
