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


def nanogpt_greedy(model, ids, max_new_tokens):
    """nanoGPT's sample loop: every token from a full forward pass over the last ``max_seq_len`` tokens, no cache."""
    for _ in range(max_new_tokens):
        logits = model(ids[:, -model.config.max_seq_len :]).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return ids[:, -max_new_tokens:]


@pytest.mark.parametrize("prompt_len, max_new_tokens", [(20, 8), (6, 60), (40, 30), (1, 24)])
def test_truncate_slides_a_window_of_the_last_max_seq_len_tokens(prompt_len, max_new_tokens):
    model = make()
    ids = torch.randint(4, 40, (2, prompt_len))
    with pytest.raises(ValueError, match=f"prompt length {prompt_len} \\+ max_new_tokens {max_new_tokens} exceeds "
                                         "max_seq_len=24.*truncate=True.*sliding window"):
        generate(model, ids, max_new_tokens)
    out = generate(model, ids, max_new_tokens, truncate=True)
    assert out.tolist() == nanogpt_greedy(model, ids, max_new_tokens).tolist()


def test_truncate_slides_padded_rows_as_each_row_alone():
    model = make()
    ids, mask = prompts()
    batched = generate(model, ids, 40, padding_mask=mask, truncate=True, do_sample=True, seed=[1, 2, 3], top_k=5)
    for i in range(3):
        alone_out = generate(model, alone(ids, mask, i), 40, truncate=True, do_sample=True, seed=[i + 1], top_k=5)
        assert batched[i].tolist() == alone_out[0].tolist(), i


def test_generate_restores_training_mode():
    model = make().train()
    generate(model, torch.tensor([[5, 6]]), 2)
    assert model.training


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(max_new_tokens=0), ValueError, "max_new_tokens must be an int >= 1, got 0"),
        (dict(max_new_tokens=1.5), TypeError, r"max_new_tokens must be an int >= 1, got 1.5 \(float\)"),
        (dict(max_new_tokens=True), TypeError, r"max_new_tokens must be an int >= 1, got True \(bool\)"),
        (dict(do_sample=True, temperature=0.0), ValueError, r"temperature must be > 0 \(a finite number\), got 0.0"),
        (dict(do_sample=True, temperature=INF), ValueError, "temperature must be > 0 .*, got inf"),
        (dict(temperature=NAN), ValueError, "temperature must be > 0 .*, got nan"),
        (dict(temperature="hot"), TypeError, "temperature must be > 0 .*, got 'hot' \\(str\\)"),
        (dict(do_sample=1), TypeError, r"do_sample must be True or False, got 1 \(int\)"),
        (dict(top_p=0.0), ValueError, r"top_p must be in \(0, 1\] or None, got 0.0"),
        (dict(top_p=1.5), ValueError, r"top_p must be in \(0, 1\]"),
        (dict(top_p=NAN), ValueError, r"top_p must be in \(0, 1\] or None, got nan"),
        (dict(top_p=True), TypeError, r"top_p must be in \(0, 1\] or None, got True \(bool\)"),
        (dict(top_k=0), ValueError, "top_k must be an int >= 1 or None, got 0"),
        (dict(top_k=2.0), TypeError, r"top_k must be an int >= 1 or None, got 2.0 \(float\)"),
        (dict(top_k=True), TypeError, "top_k must be an int >= 1 or None, got True"),
        (dict(input_ids=torch.tensor([[5, 40]])), ValueError, "input_ids holds token id 40"),
        (dict(input_ids=torch.tensor([5, 6])), ValueError, "input_ids must be a non-empty \\(batch, seq_len\\)"),
        (dict(input_ids=[[5, 6]]), TypeError, "input_ids must be a \\(batch, seq_len\\) torch.Tensor"),
        (dict(input_ids=torch.tensor([[5, 6]], dtype=torch.uint8)), TypeError,
         "input_ids must hold integer token ids of dtype torch.int64 or torch.int32, got dtype torch.uint8"),
        (dict(eos_id=99), ValueError, r"eos_id must be an int in \[0, 39\], got 99"),
        (dict(eos_id=True), TypeError, "eos_id must be an int"),
        (dict(do_sample=True, seed=[1]), ValueError, "seed must be an int or a list of 2 ints"),
        (dict(do_sample=True, seed=1.5), TypeError, "seed must be an int or a list of 2 ints"),
        (dict(do_sample=True, seed=2**70), ValueError, "seed must be an int in"),
        (dict(do_sample=True, seed=[1, True]), TypeError, r"seed\[1\] must be an int"),
        (dict(padding_mask=torch.ones(2, 3)), TypeError, "padding_mask must be a boolean tensor"),
        (dict(stop="eos"), TypeError, "stop must be a callable or None, got str"),
        (dict(truncate="yes"), TypeError, "truncate must be True or False"),
    ],
)
def test_bad_arguments_raise_before_running(kwargs, error, match, monkeypatch):
    model = make()
    monkeypatch.setattr(model, "forward", lambda *a, **k: pytest.fail("the model ran before validation"))
    args = dict(input_ids=torch.tensor([[5, 6], [7, 8]]), max_new_tokens=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        generate(model, **args)


def test_a_tiny_or_huge_temperature_samples_without_nan():
    model = make()
    ids = torch.tensor([[5, 6], [7, 8]])
    greedy = generate(model, ids, 6, do_sample=False)
    assert generate(model, ids, 6, do_sample=True, temperature=1e-300, seed=0).tolist() == greedy.tolist()
    flat = filter_logits(torch.tensor([[1e4, 0.0, -1e4]]), temperature=1e300)
    torch.testing.assert_close(flat, torch.full((1, 3), 1 / 3))
