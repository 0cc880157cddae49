"""Attention maps (``formers.inference.attention``) of every model family, on the contract tests' tiny builds.

For each family's first case: the recorded weights are distributions over the keys (rows sum to 1, masked keys
get 0), weights @ values reproduce the output of the attention call that ran on the fused path (float32, 1e-5),
and recording leaves the model's outputs bit-for-bit unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from formers.inference.attention import attention_maps, record_attention

TOL = dict(atol=1e-5, rtol=1e-5)


def _inputs(model: nn.Module, tiny: Any) -> tuple[tuple[Any, ...], dict[str, Tensor]]:
    """The model's inputs (with padding where the family takes it) and the key padding of each attention kind."""
    c = model.config
    torch.manual_seed(1)
    if tiny.kind == "causal_lm":
        ids = torch.randint(4, c.vocab_size, (2, 6))
        mask = torch.ones(2, 6, dtype=torch.bool)
        mask[1, :2] = False  # left padded
        return (ids.masked_fill(~mask, 0), mask), {"self": mask}
    if tiny.kind == "seq2seq":
        first = max(c.pad_id, c.bos_id, c.eos_id) + 1
        src = torch.randint(first, c.src_vocab_size, (2, 7))
        tgt = torch.randint(first, c.tgt_vocab_size, (2, 5))
        src_mask = torch.ones_like(src, dtype=torch.bool)
        src_mask[1, 4:] = False
        return (src.masked_fill(~src_mask, c.pad_id), tgt, src_mask), {"cross": src_mask, "self": src_mask}
    if tiny.kind == "encoder":
        mask = torch.ones(2, 7, dtype=torch.bool)
        mask[1, 5:] = False
        ids = torch.randint(1, c.vocab_size, (2, 7)).masked_fill(~mask, c.pad_id)
        return (ids, None, mask), {"self": mask}
    if tiny.kind == "image":
        height, width = tiny.image_size or (c.image_size, c.image_size)
        return (torch.randn(2, c.in_channels, height, width),), {}
    raise AssertionError(f"no attention-map inputs for kind {tiny.kind!r}")


def _logits(output: Any) -> Tensor:
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


@pytest.mark.contract_one_per_family
def test_recorded_weights_reproduce_the_fused_attention(case) -> None:
    if case.tiny.kind == "word2vec":
        pytest.skip("word2vec has no attention")
    model = case.build().eval()
    args, key_padding = _inputs(model, case.tiny)
    with torch.no_grad():
        plain = model(*args)
        with record_attention(model, keep_values=True) as records:
            recorded = model(*args)
        again = model(*args)
    torch.testing.assert_close(_logits(recorded), _logits(plain), rtol=0, atol=0)  # recording changes nothing
    torch.testing.assert_close(_logits(again), _logits(plain), rtol=0, atol=0)
    assert records, f"{case.id}: no attention recorded"
    names = {name for name, m in model.named_modules() if type(m).__name__ in
             ("MultiHeadAttention", "SelfAttention", "LuongAttention")}
    assert {r.name for r in records} == names  # every attention module reported, under its own name
    for r in records:
        w = r.weights
        assert w.dtype == torch.float32 and w.device.type == "cpu" and w.dim() == 4, (r.name, w.shape)
        assert not w.isnan().any()
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), **TOL)  # every query row is a distribution
        torch.testing.assert_close(w @ r.extra["values"], r.extra["output"], **TOL)  # weights x values = fused
        padding = key_padding.get(r.kind)
        if padding is not None and w.shape[0] == padding.shape[0] and w.shape[-1] == padding.shape[1] and not (
            r.kind == "self" and r.name.startswith("decoder")
        ):
            real_queries = padding if r.kind == "self" else torch.ones(w.shape[0], w.shape[2], dtype=torch.bool)
            masked = real_queries[:, None, :, None] & ~padding[:, None, None, :]  # (B, 1, Tq, Tk) a real query's pads
            assert (w.masked_select(masked.expand_as(w)) == 0).all(), r.name  # masked keys get 0
    output, maps = attention_maps(model, *args)
    torch.testing.assert_close(_logits(output), _logits(plain), rtol=0, atol=0)
    assert [r.name for r in maps] == [r.name for r in records]
    for a, b in zip(maps, records):
        assert a.kind == b.kind and torch.equal(a.weights, b.weights) and "values" not in a.extra
