from __future__ import annotations

import math

import pytest
import torch

from formers.layers import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)


def test_sinusoids_follow_the_paper():
    d = 16
    table = sinusoidal_table(50, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_concatenated_layout_is_a_permutation_of_columns():
    inter, concat = sinusoidal_table(20, 8), sinusoidal_table(20, 8, "concatenated")
    torch.testing.assert_close(concat[:, :4], inter[:, 0::2])
    torch.testing.assert_close(concat[:, 4:], inter[:, 1::2])


def test_positional_modules_and_errors():
    pe = SinusoidalPositionalEncoding(10, 8)
    assert pe(torch.arange(4)).shape == (4, 8)
    assert not any(True for _ in pe.parameters())
    lp = LearnedPositionalEmbedding(10, 8)
    assert lp(torch.arange(3)).shape == (3, 8)
    with pytest.raises(ValueError, match="even embed_dim"):
        sinusoidal_table(4, 7)
    with pytest.raises(ValueError, match="layout"):
        sinusoidal_table(4, 8, "zigzag")


def test_sine_position_grid_formula_and_padding_invariance():
    from formers.layers.positional import sine_position_grid

    mask = torch.ones(1, 3, 5, dtype=torch.bool)
    pos = sine_position_grid(mask, 8, temperature=100.0)
    assert pos.shape == (1, 3, 5, 8) and pos.dtype == torch.float32
    # Row 1 of 3 and column 4 of 5 (1-based 2 and 5): y = 2/3 * 2pi, x = 5/5 * 2pi; frequencies 100^(0/4), 100^(2/4).
    y, x = 2 / 3 * 2 * math.pi, 2 * math.pi
    expected = [math.sin(y), math.cos(y), math.sin(y / 10), math.cos(y / 10),
                math.sin(x), math.cos(x), math.sin(x / 10), math.cos(x / 10)]
    torch.testing.assert_close(pos[0, 1, 4], torch.tensor(expected), atol=1e-5, rtol=0)
    # An image padded into a larger grid gets the positions it gets alone.
    padded = torch.zeros(2, 6, 7, dtype=torch.bool)
    padded[0, :3, :5] = True
    padded[1] = True
    torch.testing.assert_close(sine_position_grid(padded, 8, 100.0)[0, :3, :5], pos[0])
    with pytest.raises(ValueError, match="divisible by 4"):
        sine_position_grid(mask, 6)


def test_sine_position_grid_equals_hugging_face_detr():
    detr = pytest.importorskip("transformers.models.detr.modeling_detr")
    mask = torch.zeros(2, 5, 6, dtype=torch.bool)
    mask[0, :4, :3] = True
    mask[1] = True
    theirs = detr.DetrSinePositionEmbedding(16, normalize=True)((2, 32, 5, 6), "cpu", torch.float32, mask)
    from formers.layers.positional import sine_position_grid

    ours = sine_position_grid(mask, 32)  # (B, H, W, D)
    torch.testing.assert_close(ours.permute(0, 3, 1, 2), theirs, rtol=0, atol=0)  # (B, H, W, D) -> (B, D, H, W)
