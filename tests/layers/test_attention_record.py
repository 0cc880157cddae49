"""The attention recorder of the layers: the recomputed weights follow the equation, listeners see every call."""

from __future__ import annotations

import torch

from formers.layers import attention_record, scaled_dot_product_attention


def test_attention_weights_follow_the_equation_with_bias_mask_and_causality() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8)
    bias, mask = torch.randn(1, 3, 4, 6), torch.rand(2, 1, 1, 6) > 0.3
    mask[..., -1] = True
    w = attention_record.attention_weights(q, k, mask, bias, is_causal=True, scale=0.5)
    scores = q @ k.transpose(-2, -1) * 0.5 + bias
    allowed = mask & torch.ones(4, 6, dtype=torch.bool).tril(2)  # aligned to the end: query i sees keys <= i + 2
    expected = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    torch.testing.assert_close(w, torch.nan_to_num(expected, nan=0.0))
    none = attention_record.attention_weights(q, k, torch.zeros(1, 1, 1, 6, dtype=torch.bool))
    assert torch.equal(none, torch.zeros(2, 3, 4, 6))  # a query that may see nothing gets zeros, not NaN


def test_listeners_get_each_call_with_its_output_and_nothing_after_the_block() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 6)
    calls = []
    with attention_record.listen_to_attention(calls.append):
        out = scaled_dot_product_attention(q, k, v, is_causal=True)
    scaled_dot_product_attention(q, k, v)
    assert len(calls) == 1 and calls[0].is_causal and calls[0].output is out
    w = attention_record.attention_weights(calls[0].q, calls[0].k, is_causal=True, scale=calls[0].scale)
    torch.testing.assert_close(w @ v, out, atol=1e-5, rtol=1e-5)
