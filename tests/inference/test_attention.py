"""``record_attention``: what it records (call order, names, kinds, cached decoding) and what it leaves alone
(other models, other threads, the attention function once the block ends). Every family's weights are checked
against its fused path in ``tests/models/test_attention_maps.py``."""

from __future__ import annotations

import threading

import pytest
import torch

import formers
from formers.inference.attention import attention_maps, record_attention
from formers.layers import attention_record

GPT = dict(embed_dim=16, num_heads=2, num_layers=2, vocab_size=40, max_seq_len=24, eos_id=3, dropout=0.0,
           attn_dropout=0.0)


def _gpt(seed: int = 0):
    torch.manual_seed(seed)
    return formers.create_model("gpt2", **GPT).eval()


def test_records_each_layer_in_call_order_and_stops_listening_after_the_block() -> None:
    model = _gpt()
    ids = torch.randint(0, 40, (2, 5))
    _, records = attention_maps(model, ids)
    assert [(r.name, r.kind, tuple(r.weights.shape)) for r in records] == [
        ("layers.0.self_attn", "self", (2, 2, 5, 5)), ("layers.1.self_attn", "self", (2, 2, 5, 5))
    ]
    assert torch.equal(records[0].weights.triu(1), torch.zeros(2, 2, 5, 5))  # causal: no weight on later tokens
    assert attention_record.LISTENERS == []
    with pytest.raises(RuntimeError):
        with record_attention(model):
            raise RuntimeError("boom")
    assert attention_record.LISTENERS == []
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())  # hooks removed


def test_cached_decoding_records_one_map_per_layer_and_step_equal_to_the_full_rows() -> None:
    model = _gpt()
    ids = torch.randint(0, 40, (1, 6))
    _, full = attention_maps(model, ids)
    state = model.init_cache(1, max_len=6)
    with torch.no_grad(), record_attention(model) as steps:
        model(ids[:, :3], cache=state)
        for t in range(3, 6):
            model(ids[:, t : t + 1], cache=state)
    assert len(steps) == 2 * 4
    for layer in range(2):
        prefix, *singles = steps[layer::2]
        torch.testing.assert_close(prefix.weights, full[layer].weights[:, :, :3, :3], atol=1e-5, rtol=1e-5)
        for t, step in enumerate(singles, start=3):
            assert step.weights.shape == (1, 2, 1, t + 1)
            torch.testing.assert_close(step.weights[:, :, 0], full[layer].weights[:, :, t, : t + 1], atol=1e-5,
                                       rtol=1e-5)


def test_other_models_and_other_threads_are_not_recorded() -> None:
    recorded, other = _gpt(0), _gpt(1)
    ids = torch.randint(0, 40, (1, 4))
    with torch.no_grad(), record_attention(recorded) as records:
        other(ids)
        thread = threading.Thread(target=lambda: recorded(ids))
        thread.start()
        thread.join()
        assert records == []
        recorded(ids)
    assert len(records) == 2
