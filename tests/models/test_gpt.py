from __future__ import annotations

import math

import pytest
import torch

import formers
from formers.models.gpt import GPT, GPTConfig

TINY = dict(embed_dim=16, num_heads=2, num_layers=2, vocab_size=40, max_seq_len=24, eos_id=3, dropout=0.1, attn_dropout=0.1)


def make(name: str = "gpt_mini", **extra) -> GPT:
    model = formers.create_model(name, **{**TINY, **extra})
    with torch.no_grad():  # larger weights than GPT-2's init so that rows differ visibly
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def left_padded(b=3, t=7, vocab=40):
    ids = torch.randint(4, vocab, (b, t))
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, :2] = False
    mask[2, :5] = False
    ids[~mask] = 0
    return ids, mask


def test_gpt2_variants_match_the_paper():
    from formers.registry import create_config

    shapes = {n: create_config(n) for n in ("gpt2", "gpt2_medium", "gpt2_large", "gpt2_xl")}
    assert [(c.num_layers, c.num_heads, c.embed_dim) for c in shapes.values()] == [
        (12, 12, 768), (24, 16, 1024), (36, 20, 1280), (48, 25, 1600)
    ]
    assert all(c.max_seq_len == 1024 and c.vocab_size == 50257 and c.hidden_dim == 4 * c.embed_dim for c in shapes.values())
    with torch.device("meta"):
        n = sum(p.numel() for p in formers.create_model("gpt2").parameters())
    assert shapes["gpt2"].padded_vocab_size == 50304
    assert n - (50304 - 50257) * 768 == 124_439_808  # GPT-2 small with the tied head, less the alignment rows
    char = create_config("gpt_shakespeare_char")
    assert (char.num_layers, char.num_heads, char.embed_dim, char.max_seq_len, char.dropout) == (6, 6, 384, 256, 0.2)


def test_tied_head_and_gpt2_init():
    model = formers.create_model("gpt_mini", **TINY)
    assert model.output.weight is model.embed.weight
    assert formers.create_model("gpt_mini", **TINY, tie_embeddings=False).output.weight is not model.embed.weight
    big = formers.create_model("gpt_mini", embed_dim=64, num_heads=2, num_layers=8)
    fc1, fc2 = big.layers[0].ffn.fc1.weight, big.layers[0].ffn.fc2.weight
    assert abs(fc1.std().item() - 0.02) < 0.002
    assert abs(fc2.std().item() - 0.02 / math.sqrt(16)) < 0.001
    assert float(big.layers[0].self_attn.qkv.bias.detach().abs().max()) == 0.0
    assert big.layers[0].ffn.fc1.bias is not None and formers.create_model("gpt_mini", bias=False).layers[0].ffn.fc1.bias is None


def test_config_validation():
    with pytest.raises(ValueError, match="eos_id=50256 is outside the vocabulary"):
        GPTConfig(vocab_size=100)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        GPTConfig(embed_dim=10, num_heads=4)
    model = make()
    with pytest.raises(ValueError, match="max_len must be in"):
        model.init_cache(1, max_len=25)


def test_bad_inputs_raise_clear_errors():
    model = make().eval()
    ids, mask = left_padded()
    with pytest.raises(ValueError, match="input_ids holds token id 40, outside the vocabulary"):
        model(torch.tensor([[5, 40]]))
    with pytest.raises(ValueError, match="input_ids has length 25, beyond max_seq_len=24"):
        model(torch.randint(4, 40, (1, 25)))
    with pytest.raises(TypeError, match="padding_mask must be a boolean tensor"):
        model(ids, mask.long())
    with pytest.raises(ValueError, match="padding_mask must have the shape"):
        model(ids, mask[:, :3])
    with pytest.raises(ValueError, match="hides every token"):
        model(ids, torch.zeros_like(mask))
    with pytest.raises(TypeError, match="integer token ids"):
        model(ids.float())
    state = model.init_cache(3, max_len=8)
    model(ids, mask, cache=state)
    with pytest.raises(ValueError, match="beyond the cache capacity 8"):
        model(ids[:, :2], cache=state)
    with pytest.raises(ValueError, match="batch size 1 but the cache was made for 3"):
        model(ids[:1, :1], cache=state)
    with pytest.raises(TypeError, match="padding_mask must be a boolean tensor"):
        model(ids[:, :1], mask[:, :1].int(), cache=state)


def test_vocab_alignment_rows_are_zero_unseen_and_never_learn():
    torch.manual_seed(0)
    model = formers.create_model("gpt_mini", vocab_size=100, vocab_multiple=64, num_layers=1, max_seq_len=16, eos_id=None)
    assert model.embed.weight.shape == (128, 128) and model.output.weight is model.embed.weight
    assert torch.count_nonzero(model.embed.weight[100:]) == 0
    ids = torch.randint(0, 100, (2, 8))
    logits = model(ids).logits
    assert logits.shape == (2, 8, 100)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    assert torch.count_nonzero(model.embed.weight.grad[100:]) == 0
    with pytest.raises(ValueError, match="100"):
        model(torch.tensor([[100]]))
    # same function as the unpadded model holding the same vocabulary rows
    plain = formers.create_model("gpt_mini", vocab_size=100, num_layers=1, max_seq_len=16, eos_id=None)
    state = dict(model.state_dict())
    state["embed.weight"] = state["embed.weight"][:100]
    state.pop("output.weight", None)
    plain.load_state_dict(state, strict=False)
    torch.testing.assert_close(plain.eval()(ids).logits, model.eval()(ids).logits)


def test_targets_give_the_training_loss_of_the_logits():
    torch.manual_seed(0)
    sizes = dict(vocab_size=100, vocab_multiple=64, num_layers=1, max_seq_len=16, eos_id=None)
    model = formers.create_model("gpt_mini", **sizes, dropout=0.0, attn_dropout=0.0)
    ids, targets = torch.randint(0, 100, (3, 9)), torch.randint(0, 100, (3, 9))
    targets[1, :4] = -100  # positions without a loss
    expected = torch.nn.functional.cross_entropy(model(ids).logits.flatten(0, 1), targets.flatten())
    params = list(model.parameters())
    expected_grads = torch.autograd.grad(expected, params, retain_graph=True)
    for return_logits in (True, None):  # the loss of the logits, and the default chunked loss without logits
        out = model(ids, targets=targets, return_logits=return_logits)
        torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=1e-6)
        if return_logits:
            assert out.logits.shape == (3, 9, 100)
        else:
            assert out.logits is None  # never made
        grads = torch.autograd.grad(out.loss, params)
        for (name, _), grad, want in zip(model.named_parameters(), grads, expected_grads):
            torch.testing.assert_close(grad, want, rtol=1e-6, atol=1e-6, msg=name)
        assert torch.count_nonzero(grads[0][100:]) == 0  # the alignment rows of the tied embedding stay zero
    assert model(ids).loss is None
    with pytest.raises(ValueError, match="return_logits=False needs targets"):
        model(ids, return_logits=False)
    with pytest.raises(ValueError, match=r"targets must have the shape of input_ids \(3, 9\), got \(3, 8\)"):
        model(ids, targets=targets[:, :8])
    with pytest.raises(ValueError, match=r"targets holds class 100, outside \[0, 100\)"):
        model(ids, targets=torch.full_like(ids, 100))
