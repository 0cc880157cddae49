from __future__ import annotations

import pytest
import torch

import formers
from formers.generation.causal_lm import generate
from formers.generation.graphed import GraphedGreedyDecoder, fast_greedy_generate
from formers.layers.attention import KVCache


def make(**extra):
    config = {"embed_dim": 16, "num_heads": 2, "num_layers": 2, "vocab_size": 40, "max_seq_len": 32, "eos_id": None}
    model = formers.create_model("gpt_mini", **{**config, **extra})
    with torch.no_grad():  # larger weights than GPT-2's init so that continuations vary
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def prompts(device="cpu"):
    ids = torch.randint(4, 40, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, :2] = False
    mask[2, :4] = False
    ids[~mask] = 0
    return ids.to(device), mask.to(device)


def test_static_kv_cache_writes_in_place_and_returns_whole_buffers():
    cache = KVCache(2, 3, 8, 4, torch.float32, torch.device("cpu"), static=True)
    k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    ck, cv = cache.append(k[:, :, :3], v[:, :, :3])
    assert ck.shape == (2, 3, 8, 4) and int(cache.filled) == 3
    ck, cv = cache.append(k[:, :, 3:], v[:, :, 3:])
    torch.testing.assert_close(ck[:, :, :5], k)
    torch.testing.assert_close(cv[:, :, :5], v)
    assert int(cache.filled) == 5
    cache.reset()
    assert int(cache.filled) == 0 and cache.length == 0


@pytest.mark.parametrize("static", [False, True])
def test_packed_appends_equal_separate_ones_and_survive_a_reorder(static):
    a = KVCache(3, 2, 8, 4, torch.float32, torch.device("cpu"), static=static)
    b = KVCache(3, 2, 8, 4, torch.float32, torch.device("cpu"), static=static)
    for t in (3, 1, 2):
        kv = torch.randn(3, t, 2, 2, 4).permute(2, 0, 3, 1, 4)  # (2, B, H, T, Dh), a strided view as in SelfAttention
        ka, va = a.append_packed(kv)
        kb, vb = b.append(kv[0], kv[1])
        assert torch.equal(ka, kb) and torch.equal(va, vb)
    if not static:
        index = torch.tensor([2, 0, 0])
        a.reorder(index)
        b.reorder(index)
        kv = torch.randn(2, 3, 2, 1, 4)
        ka, va = a.append_packed(kv)
        kb, vb = b.append(kv[0], kv[1])
        assert torch.equal(ka, kb) and torch.equal(va, vb) and ka.shape == (3, 2, 7, 4)
        with pytest.raises(ValueError, match="KV cache overflow: 7 cached \\+ 2 new positions > capacity 8"):
            a.append_packed(torch.randn(2, 3, 2, 2, 4))


@pytest.mark.parametrize("padded", [False, True])
def test_static_state_logits_equal_dynamic_state(padded):
    model = make()
    ids, mask = prompts()
    mask = mask if padded else None
    if not padded:
        ids = torch.randint(4, 40, (3, 6))
    with torch.no_grad():
        dynamic = model.init_cache(3, 16)
        static = model.init_cache(3, 16, static=True)
        a = model(ids, mask, cache=dynamic).logits
        b = model(ids, mask, cache=static).logits
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        for _ in range(6):
            tok = a[:, -1].argmax(-1, keepdim=True)
            a = model(tok, cache=dynamic).logits
            b = model(tok, cache=static).logits
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        chunk = torch.randint(4, 40, (3, 3))  # several positions at once after decoding
        torch.testing.assert_close(model(chunk, cache=static).logits, model(chunk, cache=dynamic).logits,
                                   atol=1e-5, rtol=1e-5)


def test_a_static_decoding_step_counts_its_slots_once_for_every_layer(count_ops):
    """The step's slots and mask are made once, not per layer, and keys and values are written together: a step is a
    fixed, small number of kernels per layer."""
    counts = {}
    for layers in (2, 4):
        model = make(num_layers=layers)
        state = model.init_cache(3, 16, static=True)
        assert len({id(c.filled) for c in state.caches}) == 1  # one write position for the state
        with torch.no_grad():
            model(torch.randint(4, 40, (3, 5)), cache=state)
            with count_ops() as ops:
                model(torch.randint(4, 40, (3, 1)), cache=state)
        assert int(state.caches[0].filled) == 6 and all(c.step_slots is None for c in state.caches)
        counts[layers] = ops.seen
    per_layer = {op: (counts[4][op] - counts[2][op]) // 2 for op in counts[4] if counts[4][op] != counts[2][op]}
    for op in ("arange", "where", "add_"):  # made once per step, whatever the depth
        assert op not in per_layer, per_layer
    # keys and values reach the cache in one copy, straight from the fused projection's output
    assert per_layer["index_copy_"] == 1 and per_layer["addmm"] == 4, per_layer


def test_unpadded_forward_takes_the_fused_causal_path(monkeypatch):
    model = make()
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, is_causal=False, **kwargs):
        seen.append((attn_mask is None, is_causal))
        return real(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model(torch.randint(0, 40, (2, 7)))
    assert seen == [(True, True)] * 2


def test_decoder_equals_generate_padded_batch_and_reuse():
    model = make()
    ids, mask = prompts()
    decoder = GraphedGreedyDecoder(model, batch_size=3, max_len=20)
    assert decoder.generate(ids, 10, padding_mask=mask).tolist() == generate(model, ids, 10, padding_mask=mask).tolist()
    other = torch.randint(4, 40, (3, 4))  # the same decoder, another call
    assert decoder.generate(other, 12).tolist() == generate(model, other, 12).tolist()
    assert fast_greedy_generate(model, other, 5).tolist() == generate(model, other, 5).tolist()


def test_decoder_eos_fill_and_early_stop_match_generate():
    model = make(pad_id=1)
    ids, mask = prompts()
    expected = generate(model, ids, 14, padding_mask=mask)
    eos = int(expected[0, 2])  # an id the first row emits early: it ends there
    expected = generate(model, ids, 14, padding_mask=mask, eos_id=eos)
    got = GraphedGreedyDecoder(model, 3, 20, check_every=4).generate(ids, 14, padding_mask=mask, eos_id=eos)
    assert got.tolist() == expected.tolist()


def test_decoder_rejects_bad_calls():
    model = make()
    decoder = GraphedGreedyDecoder(model, batch_size=1, max_len=10)
    with pytest.raises(ValueError, match="batch size"):
        decoder.generate(torch.zeros(2, 3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="max_len=10"):
        decoder.generate(torch.zeros(1, 3, dtype=torch.long), 8)
    with pytest.raises(ValueError, match="vocabulary"):
        decoder.generate(torch.full((1, 3), 99), 4)
    with pytest.raises(TypeError, match=r"max_new_tokens must be an int >= 1, got 1.5 \(float\)"):
        decoder.generate(torch.zeros(1, 3, dtype=torch.long), 1.5)
    with pytest.raises(TypeError, match="input_ids must be a \\(batch, seq_len\\) torch.Tensor"):
        decoder.generate([[1, 2]], 2)
    with pytest.raises(TypeError, match="dtype torch.int64 or torch.int32, got dtype torch.uint8"):
        decoder.generate(torch.zeros(1, 3, dtype=torch.uint8), 2)
    with pytest.raises(TypeError, match="eos_id must be an int"):
        decoder.generate(torch.zeros(1, 3, dtype=torch.long), 2, eos_id=2.0)
    with pytest.raises(ValueError, match="check_every must be an int >= 1, got 0"):
        GraphedGreedyDecoder(model, batch_size=1, max_len=10, check_every=0)
    with pytest.raises(TypeError, match="batch_size must be an int >= 1, got True"):
        GraphedGreedyDecoder(model, batch_size=True)
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        fast_greedy_generate(model, torch.zeros(1, 3, dtype=torch.long), 10**6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_graph_decoder_equals_eager_generate(compile):
    model = make().cuda()
    ids, mask = prompts("cuda")
    decoder = GraphedGreedyDecoder(model, batch_size=3, max_len=24, compile=compile)
    for _ in range(2):  # the captured graph is reused by the second call
        got = decoder.generate(ids, 16, padding_mask=mask)
        assert decoder.graph is not None
        assert got.tolist() == generate(model, ids, 16, padding_mask=mask).tolist()


@pytest.mark.slow
def test_compiled_static_step_equals_generate_on_cpu():
    model = make()
    ids = torch.randint(4, 40, (1, 5))
    decoder = GraphedGreedyDecoder(model, batch_size=1, max_len=20, compile=True)
    assert decoder.generate(ids, 12).tolist() == generate(model, ids, 12).tolist()


def test_graph_names_the_captured_single_step_greedy_graph():
    """``graph`` reads the decoder's graphs under their (step kind, steps) key: the one-step greedy graph."""
    from formers.generation.graphed import GREEDY

    decoder = GraphedGreedyDecoder(make(), batch_size=1, max_len=16)
    assert decoder.graph is None  # nothing captured (the CPU runs the step eagerly)
    captured, burst = object(), object()
    decoder.decoder.graphs[(GREEDY.kind(), 16)] = burst
    assert decoder.graph is None
    decoder.decoder.graphs[(GREEDY.kind(), 1)] = captured
    assert decoder.graph is captured
