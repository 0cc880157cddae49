"""Seeded device-side draws and the token picker shared by the eager and the static decoding paths."""

from __future__ import annotations

import pytest
import torch

from formers.generation.sampling import (
    filter_logits,
    next_tokens,
    row_keys,
    uniform_table,
)


def test_uniform_table_rows_are_seed_streams_independent_of_batch_and_length():
    table = uniform_table(row_keys(123, 4), 50, "cpu")  # (4, 50)
    assert table.shape == (4, 50) and table.dtype == torch.float64
    assert float(table.min()) >= 0.0 and float(table.max()) < 1.0
    per_row = uniform_table(row_keys([123, 123], 2), 50, "cpu")  # stream 0 of the seed, twice
    assert per_row[0].tolist() == per_row[1].tolist() == table[0].tolist()
    assert uniform_table([(123, 2)], 20, "cpu")[0].tolist() == table[2, :20].tolist()
    assert table[0].tolist() != table[1].tolist()
    assert uniform_table(row_keys(-1, 1), 5, "cpu").tolist() == uniform_table(row_keys(2**64 - 1, 1), 5, "cpu").tolist()
    assert uniform_table(row_keys(2**32, 1), 5, "cpu").tolist() != uniform_table(row_keys(0, 1), 5, "cpu").tolist()


def test_uniform_table_is_uniform():
    u = uniform_table(row_keys(0, 64), 1000, "cpu").flatten()  # 64,000 numbers
    counts = torch.histc(u.float(), bins=10, min=0, max=1)
    expected = u.numel() / 10
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 40  # 9 degrees of freedom: p < 1e-5 beyond 40
    lag = float(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1])
    assert abs(lag) < 0.02


@pytest.mark.parametrize(
    "options", [dict(), dict(top_k=3), dict(top_p=0.7), dict(top_k=4, top_p=0.8, temperature=0.5), dict(temperature=2.0)]
)
def test_draws_follow_the_filtered_distribution(options):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, 1.5, -3.0])
    n = 40000
    u = uniform_table(row_keys(9, n), 1, "cpu")[:, 0]
    tokens = next_tokens(logits.expand(n, -1), u, **options)
    freq = torch.bincount(tokens, minlength=7).double() / n
    probs = filter_logits(logits[None], **options)[0].double()
    torch.testing.assert_close(freq, probs, atol=0.012, rtol=0)
    assert bool((freq[probs == 0] == 0).all())  # filtered tokens are never drawn


def test_greedy_and_tiny_temperature_take_the_argmax():
    logits = torch.randn(5, 30)
    u = torch.rand(5, dtype=torch.float64)
    assert next_tokens(logits, None).tolist() == logits.argmax(-1).tolist()
    for options in (dict(), dict(top_k=5), dict(top_p=0.5)):
        assert next_tokens(logits, u, temperature=1e-30, **options).tolist() == logits.argmax(-1).tolist()


def test_an_unseeded_table_follows_torch_manual_seed():
    torch.manual_seed(1)
    a = uniform_table(row_keys(None, 2), 4, "cpu")
    torch.manual_seed(1)
    assert uniform_table(row_keys(None, 2), 4, "cpu").tolist() == a.tolist()


def test_temperature_and_top_p_as_tensors_pick_the_tokens_of_their_values():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(64, 300, generator=gen)
    uniform = torch.rand(64, generator=gen, dtype=torch.float64)
    for temperature, top_k, top_p in ((0.7, None, 0.9), (1.3, 20, 0.5), (1e-9, None, 0.3), (2.0, 5, 0.99)):
        expected = next_tokens(logits, uniform, temperature, top_k, top_p)
        as_tensors = (torch.tensor(temperature, dtype=torch.float64), torch.tensor(top_p, dtype=torch.float64))
        assert next_tokens(logits, uniform, as_tensors[0], top_k, as_tensors[1]).equal(expected)
    assert not next_tokens(logits, uniform, torch.tensor(0.5, dtype=torch.float64)).equal(next_tokens(logits, uniform))
