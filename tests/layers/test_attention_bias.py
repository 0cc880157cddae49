from __future__ import annotations

import pytest
import torch

from formers.layers.attention_bias import AttentionBias, grid_offset_index

timm_ef = pytest.importorskip("timm.models.efficientformer")


@pytest.mark.parametrize("grid", [(7, 7), (3, 5), (1, 4)])
def test_offset_index_matches_timm(grid):
    ref = timm_ef.Attention(dim=16, key_dim=4, num_heads=2, resolution=grid)
    assert torch.equal(grid_offset_index(*grid), ref.attention_bias_idxs)


def test_offset_index_is_the_absolute_offset():
    index = grid_offset_index(3, 4)  # token t sits at (t // 4, t % 4)
    for i in range(12):
        for j in range(12):
            dy, dx = abs(i // 4 - j // 4), abs(i % 4 - j % 4)
            assert index[i, j] == dy * 4 + dx


def test_bias_equals_timm_and_trains_its_table():
    ref = timm_ef.Attention(dim=16, key_dim=4, num_heads=3, resolution=4)  # train mode: no bias cache
    bias = AttentionBias(3, (4, 4))
    with torch.no_grad():
        ref.attention_biases.normal_()
        bias.table.copy_(ref.attention_biases)
    out = bias()
    assert out.shape == (3, 16, 16)
    torch.testing.assert_close(out, ref.get_attention_biases(torch.device("cpu")), rtol=0, atol=0)
    # symmetric offsets: the bias of (i, j) equals that of (j, i); the diagonal reads entry 0
    torch.testing.assert_close(out, out.transpose(1, 2), rtol=0, atol=0)
    assert torch.equal(out[:, range(16), range(16)], bias.table[:, :1].expand(3, 16))
    out.square().sum().backward()
    assert bias.table.grad is not None and bias.table.grad.abs().sum() > 0


def test_state_dict_holds_only_the_table():
    bias = AttentionBias(2, (3, 3))
    assert list(bias.state_dict()) == ["table"] and bias.table.shape == (2, 9) and bias.num_tokens == 9
    assert not bias.table.detach().any()  # starts unbiased


def test_bad_arguments():
    with pytest.raises(ValueError, match="grid size"):
        grid_offset_index(0, 3)
    with pytest.raises(ValueError, match="num_heads"):
        AttentionBias(0, (2, 2))
