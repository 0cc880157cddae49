from __future__ import annotations

import pytest
import torch

from formers.layers import (
    DecoderBlock,
    EncoderBlock,
    FeedForward,
    KVCache,
    OutputProjection,
    PreNormDecoderBlock,
    PreNormEncoderBlock,
    TokenEmbedding,
    get_activation,
)


def test_post_norm_encoder_block_is_the_paper_equation():
    block = EncoderBlock(8, 2, 16, dropout=0.0).eval()
    x = torch.randn(2, 5, 8)
    h = block.self_attn_norm(x + block.self_attn(x))
    ref = block.ffn_norm(h + block.ffn.fc2(torch.relu(block.ffn.fc1(h))))
    torch.testing.assert_close(block(x), ref)


def test_pre_norm_encoder_block_equation():
    block = PreNormEncoderBlock(8, 2, 16, dropout=0.0, activation="gelu").eval()
    x = torch.randn(2, 5, 8)
    h = x + block.self_attn(block.self_attn_norm(x))
    ref = h + block.ffn(block.ffn_norm(h))
    torch.testing.assert_close(block(x), ref)


@pytest.mark.parametrize("cls", [DecoderBlock, PreNormDecoderBlock])
def test_decoder_block_cached_equals_full(cls):
    block = cls(8, 2, 16, dropout=0.0).eval()
    x, mem = torch.randn(2, 4, 8), torch.randn(2, 3, 8)
    mem_mask = torch.ones(2, 1, 1, 3, dtype=torch.bool)
    full = block(x, mem, memory_mask=mem_mask)
    cache = KVCache(2, 2, 4, 4, torch.float32, torch.device("cpu"))
    kv = block.cross_attn.project_kv(mem)
    steps = [block(x[:, t : t + 1], None, memory_mask=mem_mask, cache=cache, memory_kv=kv) for t in range(4)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-6, rtol=1e-5)


def test_decoder_is_causal():
    block = DecoderBlock(8, 2, 16, dropout=0.0).eval()
    x, mem = torch.randn(1, 4, 8), torch.randn(1, 3, 8)
    out = block(x, mem)
    x2 = x.clone()
    x2[:, 3] += 5.0
    torch.testing.assert_close(block(x2, mem)[:, :3], out[:, :3])


def test_ffn_activations_and_unknown_name():
    ffn = FeedForward(4, 8, "swish")
    assert ffn(torch.randn(2, 3, 4)).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="activation must be one of"):
        get_activation("tanhh")


def test_embedding_scaling_tying_and_range_check():
    emb = TokenEmbedding(10, 4, padding_idx=0, scale=True)
    ids = torch.tensor([[1, 2]])
    torch.testing.assert_close(emb(ids), emb.weight[ids] * 2.0)
    assert emb.weight[0].abs().sum() == 0
    out = OutputProjection(4, 10, bias=True, tied_to=emb)
    assert out.weight is emb.weight and out(torch.randn(1, 2, 4)).shape == (1, 2, 10)
    with pytest.raises(ValueError, match=r"input_ids holds token id 10, outside the vocabulary range \[0, 10\)"):
        emb(torch.tensor([[1, 10]]))
    with pytest.raises(ValueError, match="token id -1"):
        emb(torch.tensor([[-1]]))
    with pytest.raises(TypeError, match="integer token ids"):
        emb(torch.tensor([[1.0]]))
    for narrow in (torch.uint8, torch.int8, torch.int16, torch.bool):  # F.embedding takes int64 and int32 only
        with pytest.raises(TypeError, match=rf"dtype torch.int64 or torch.int32, got dtype {narrow}; convert with"):
            emb(torch.tensor([[1]], dtype=narrow))
    torch.testing.assert_close(emb(torch.tensor([[1, 2]], dtype=torch.int32)), emb(ids))
    with pytest.raises(ValueError, match="cannot tie"):
        OutputProjection(4, 11, tied_to=emb)


def test_positions_reach_queries_and_keys_but_not_values():
    import pytest

    from formers.layers import DecoderBlock, EncoderBlock, FusedPreNormEncoderBlock

    torch.manual_seed(0)
    x, pos, memory, memory_pos = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 7, 8), torch.randn(2, 7, 8)
    enc = EncoderBlock(8, 2, 16, dropout=0.0).eval()
    attn = enc.self_attn
    expected = enc.ffn_norm(
        (h := enc.self_attn_norm(x + attn(x + pos, x + pos, x))) + enc.ffn(h)
    )
    torch.testing.assert_close(enc(x, pos=pos), expected)
    assert not torch.allclose(enc(x, pos=pos), enc(x))
    dec = DecoderBlock(8, 2, 16, dropout=0.0).eval()
    h = dec.self_attn_norm(x + dec.self_attn(x + pos, x + pos, x))  # not causal
    h = dec.cross_attn_norm(h + dec.cross_attn(h + pos, memory + memory_pos, memory))
    expected = dec.ffn_norm(h + dec.ffn(h))
    out = dec(x, memory, query_pos=pos, memory_pos=memory_pos, is_causal=False)
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="fuses them"):
        FusedPreNormEncoderBlock(8, 2, 16)(x, pos=pos)
