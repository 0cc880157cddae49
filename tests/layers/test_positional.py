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
