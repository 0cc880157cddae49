from __future__ import annotations

import pytest
import torch

import formers
from formers.generation.causal_lm import filter_logits, generate


def make(**extra):
    config = dict(embed_dim=16, num_heads=2, num_layers=2, vocab_size=40, max_seq_len=24, eos_id=None)
    model = formers.create_model("gpt_mini", **{**config, **extra})
    with torch.no_grad():  # larger weights than GPT-2's init so that continuations vary
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def prompts():
    ids = torch.randint(4, 40, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, :2] = False
    mask[2, :4] = False
    ids[~mask] = 0
    return ids, mask


def alone(ids, mask, i):
    n = int(mask[i].sum())
    return ids[i : i + 1, -n:]


def test_greedy_equals_full_recomputation_and_batched_equals_alone():
    model = make()
    ids, mask = prompts()
    out = generate(model, ids, 8, padding_mask=mask)
    assert out.shape == (3, 8)
    for i in range(3):
        seq = alone(ids, mask, i)
        for _ in range(8):  # no cache: argmax of a full forward pass each step
            seq = torch.cat([seq, model(seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
        n = int(mask[i].sum())
        assert out[i].tolist() == seq[0, n:].tolist()
        assert generate(model, alone(ids, mask, i), 8).tolist() == out[i : i + 1].tolist()
    assert model.generate(ids, 8, padding_mask=mask).tolist() == out.tolist()


def test_sampling_is_reproducible_and_per_row_seeds_match_alone():
    model = make()
    ids, mask = prompts()
    opts = dict(do_sample=True, temperature=0.9, top_k=20, top_p=0.95)
    a = generate(model, ids, 10, padding_mask=mask, seed=7, **opts)
    assert a.tolist() == generate(model, ids, 10, padding_mask=mask, seed=7, **opts).tolist()
    assert a.tolist() != generate(model, ids, 10, padding_mask=mask, seed=8, **opts).tolist()
    rows = generate(model, ids, 10, padding_mask=mask, seed=[11, 12, 13], **opts)
    for i in range(3):
        assert generate(model, alone(ids, mask, i), 10, seed=[11 + i], **opts).tolist() == rows[i : i + 1].tolist()


def test_filter_logits_top_k_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    torch.testing.assert_close(filter_logits(logits, top_k=2), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    torch.testing.assert_close(filter_logits(logits, top_p=0.8), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    torch.testing.assert_close(filter_logits(logits, top_p=0.81)[0, :3].sum(), torch.tensor(1.0))
    assert filter_logits(logits, top_p=0.1)[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    sharp = filter_logits(logits, temperature=0.01)
    assert sharp[0, 0] > 0.999


def test_sampled_tokens_respect_top_k():
    model = make()
    ids, mask = prompts()
    out = generate(model, ids, 6, padding_mask=mask, do_sample=True, top_k=1, seed=0)
    assert out.tolist() == generate(model, ids, 6, padding_mask=mask).tolist()


def test_rows_stop_at_eos_and_are_filled():
    model = make(pad_id=0)
    ids, mask = prompts()
    eos = int(generate(model, ids, 12, padding_mask=mask)[0, 3])  # a token the first row emits at step 4
    out = generate(model, ids, 12, padding_mask=mask, eos_id=eos)
    lists = generate(model, ids, 12, padding_mask=mask, eos_id=eos, as_lists=True)
    assert eos in out[0].tolist() and out.shape[1] <= 12
    for row, listed in zip(out.tolist(), lists):
        if eos in row:
            end = row.index(eos)
            assert all(t == 0 for t in row[end + 1 :]) and listed == row[:end]
        else:
            assert listed == row
    model.config.eos_id = eos  # the config's eos_id is the default
    assert generate(model, ids, 12, padding_mask=mask).tolist() == out.tolist()


def test_stop_and_streamer():
    model = make()
    ids, mask = prompts()
    seen = []
    out = generate(model, ids, 8, padding_mask=mask, stop=lambda row: len(row) >= 3, streamer=seen.append)
    assert out.shape == (3, 3) and seen == out.T.tolist()
    lists = generate(model, ids, 8, padding_mask=mask, stop=lambda row: len(row) >= 2 + len(row) % 2, as_lists=True)
    assert [len(r) for r in lists] == [2, 2, 2]


def test_truncate_keeps_the_latest_prompt_tokens():
    model = make()
    ids = torch.randint(4, 40, (2, 20))
    with pytest.raises(ValueError, match="prompt length 20 \\+ max_new_tokens 8 exceeds max_seq_len=24.*truncate=True"):
        generate(model, ids, 8)
    out = generate(model, ids, 8, truncate=True)
    assert out.tolist() == generate(model, ids[:, -16:], 8).tolist()
    with pytest.raises(ValueError, match="no room for a prompt"):
        generate(model, ids, 24, truncate=True)


def test_generate_restores_training_mode():
    model = make().train()
    generate(model, torch.tensor([[5, 6]]), 2)
    assert model.training


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_new_tokens=0), "max_new_tokens must be an int >= 1, got 0"),
        (dict(do_sample=True, temperature=0.0), "temperature must be > 0 when sampling, got 0.0"),
        (dict(top_p=0.0), "top_p must be in \\(0, 1\\]"),
        (dict(top_p=1.5), "top_p must be in \\(0, 1\\]"),
        (dict(top_k=0), "top_k must be an int >= 1"),
        (dict(input_ids=torch.tensor([[5, 40]])), "input_ids holds token id 40"),
        (dict(input_ids=torch.tensor([5, 6])), "input_ids must be a non-empty \\(batch, seq_len\\)"),
        (dict(eos_id=99), "eos_id=99 is outside the vocabulary"),
        (dict(do_sample=True, seed=[1]), "seed must be an int or a list of 2 ints"),
        (dict(padding_mask=torch.ones(2, 3)), "padding_mask must be a boolean tensor"),
    ],
)
def test_bad_arguments_raise_before_running(kwargs, match, monkeypatch):
    model = make()
    monkeypatch.setattr(model, "forward", lambda *a, **k: pytest.fail("the model ran before validation"))
    args = dict(input_ids=torch.tensor([[5, 6], [7, 8]]), max_new_tokens=4)
    args.update(kwargs)
    with pytest.raises(ValueError if "boolean" not in match else TypeError, match=match):
        generate(model, **args)
