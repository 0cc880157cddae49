from __future__ import annotations

import math

import pytest
import torch

from formers.layers import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    mask_to_bias,
    scaled_dot_product_attention,
)


def paper_attention(q, k, v, mask=None, bias=None):
    """softmax(Q K^T / sqrt(d_k)) V written out per (batch, head) in float64."""
    b, h, tq, d = q.shape
    out = torch.empty(b, h, tq, v.shape[-1], dtype=torch.float64)
    for i in range(b):
        for j in range(h):
            s = q[i, j].double() @ k[i, j].double().T / math.sqrt(d)
            if bias is not None:
                s = s + bias.expand(b, h, tq, k.shape[2])[i, j].double()
            if mask is not None:
                s[~mask.expand(b, h, tq, k.shape[2])[i, j]] = -math.inf
            out[i, j] = torch.softmax(s, dim=-1) @ v[i, j].double()
    return out


@pytest.mark.parametrize("backend", ["math", "sdpa"])
@pytest.mark.parametrize("case", ["plain", "mask", "bias", "mask+bias", "causal", "causal+mask"])
def test_attention_matches_the_equation(backend, case):
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8), torch.randn(2, 3, 5, 8)
    mask = torch.rand(2, 1, 5, 5) > 0.3
    mask[..., 0] = True  # every query sees at least one key
    bias = torch.randn(1, 3, 5, 5)
    kw = {}
    ref_mask, ref_bias = None, None
    if "mask" in case:
        kw["attn_mask"] = ref_mask = mask
    if "bias" in case:
        kw["attn_bias"] = ref_bias = bias
    if "causal" in case:
        kw["is_causal"] = True
        c = causal_mask(5)
        ref_mask = c if ref_mask is None else ref_mask & c
    out = scaled_dot_product_attention(q, k, v, backend=backend, **kw)
    ref = paper_attention(q, k, v, ref_mask, ref_bias)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_causal_aligned_to_the_end_for_cached_queries():
    q, k, v = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    out = scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = paper_attention(q, k, v, causal_mask(2, 5))
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    assert causal_mask(2, 5).tolist() == [[True] * 4 + [False], [True] * 5]


def test_mha_backends_agree_and_cross_attention_shapes():
    mha = MultiHeadAttention(16, 4, kv_dim=12).eval()
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 7, 12)
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 4:] = False
    fast = mha(x, mem, attn_mask=mask)
    mha.backend = "math"
    slow = mha(x, mem, attn_mask=mask)
    assert fast.shape == (2, 5, 16)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    # masked keys have no influence
    mem2 = mem.clone()
    mem2[1, 4:] = 100.0
    torch.testing.assert_close(mha(x, mem2, attn_mask=mask)[1], slow[1], atol=1e-6, rtol=1e-5)


def test_kv_cache_incremental_equals_full():
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 6, 16)
    full = mha(x, is_causal=True)
    cache = KVCache(2, 4, 6, 4, torch.float32, torch.device("cpu"))
    steps = [mha(x[:, :2], is_causal=True, cache=cache)] + [mha(x[:, t : t + 1], is_causal=True, cache=cache) for t in range(2, 6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="overflow"):
        cache.append(torch.zeros(2, 4, 1, 4), torch.zeros(2, 4, 1, 4))


def test_kv_cache_reorder_selects_rows():
    cache = KVCache(3, 1, 4, 2, torch.float32, torch.device("cpu"))
    k = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 1, 2)
    cache.append(k, k)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.k[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_grouped_cross_attention_equals_attention_over_copied_memory(backend):
    """Keys/values of batch B / G: each group of G query rows (a sentence's beams) reads its row once, and gets what
    it gets from memory copied to every row."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, backend=backend).eval()
    memory, query = torch.randn(3, 5, 16), torch.randn(6, 1, 16)  # 3 sources, 2 beams each
    mask = torch.ones(3, 1, 1, 5, dtype=torch.bool)
    mask[1, ..., 3:] = False
    kv = mha.project_kv(memory)
    rows = torch.arange(3).repeat_interleave(2)
    copied = mha(query, attn_mask=mask[rows], kv=(kv[0][rows], kv[1][rows]))
    grouped = mha(query, attn_mask=mask, kv=kv)
    torch.testing.assert_close(grouped, copied, atol=1e-6, rtol=1e-6)
    bias = mask_to_bias(mask, torch.float32)
    torch.testing.assert_close(mha(query, attn_bias=bias, kv=kv), copied, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="query batch 6 with 2 positions against key batch 4"):
        mha(torch.randn(6, 2, 16), kv=mha.project_kv(torch.randn(4, 5, 16)))


def test_mha_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(10, 3)


def test_self_attention_equals_multi_head_attention_with_the_same_weights():
    torch.manual_seed(0)
    from formers.layers import SelfAttention

    fused = SelfAttention(16, 4).eval()
    split = MultiHeadAttention(16, 4).eval()
    with torch.no_grad():
        wq, wk, wv = fused.qkv.weight.split(16, dim=0)
        bq, bk, bv = fused.qkv.bias.split(16, dim=0)
        for proj, w, b in ((split.q_proj, wq, bq), (split.k_proj, wk, bk), (split.v_proj, wv, bv)):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        split.out_proj.load_state_dict(fused.out_proj.state_dict())
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])[:, None, None, :]
    bias = torch.randn(1, 4, 5, 5)
    for kwargs in ({}, {"is_causal": True}, {"attn_mask": mask, "attn_bias": bias}):
        torch.testing.assert_close(fused(x, **kwargs), split(x, **kwargs), atol=1e-6, rtol=1e-5)


def test_self_attention_with_distinct_value_width_matches_the_math_path():
    torch.manual_seed(0)
    from formers.layers import SelfAttention

    attn = SelfAttention(12, 3, head_dim=5, value_head_dim=7).eval()
    x = torch.randn(2, 6, 12)
    bias = torch.randn(3, 6, 6)
    fast = attn(x, attn_bias=bias)
    attn.backend = "math"
    assert fast.shape == (2, 6, 12)
    torch.testing.assert_close(fast, attn(x, attn_bias=bias), atol=1e-6, rtol=1e-5)
    # by hand: softmax(q k^T * 5^-0.5 + bias) v, heads of width 5 (q, k) and 7 (v)
    q, k, v = attn.qkv(x).split([15, 15, 21], dim=-1)
    q, k, v = (t.view(2, 6, 3, -1).transpose(1, 2) for t in (q, k, v))
    w = torch.softmax(q @ k.transpose(-1, -2) * 5**-0.5 + bias, dim=-1)
    ref = attn.out_proj((w @ v).transpose(1, 2).reshape(2, 6, 21))
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-5)


def test_a_mask_made_an_additive_bias_once_attends_as_the_boolean_mask():
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    mask = torch.rand(2, 1, 4, 6) < 0.6
    mask[..., 0] = True  # no empty row
    bias = mask_to_bias(mask, torch.float64)
    assert bias.dtype == torch.float64 and set(bias.unique().tolist()) == {0.0, float("-inf")}
    for backend in ("sdpa", "math"):
        torch.testing.assert_close(
            scaled_dot_product_attention(q, k, v, attn_bias=mask_to_bias(mask, q.dtype), backend=backend),
            scaled_dot_product_attention(q, k, v, attn_mask=mask, backend=backend))
