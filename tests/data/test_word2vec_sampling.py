from __future__ import annotations

import numpy as np
import pytest
import torch

from formers.data.word2vec import (
    NegativeSampler,
    context_windows,
    sentence_ids,
    skipgram_pairs,
    subsample,
)
from formers.data.word2vec.sampling import alias_table

stats = pytest.importorskip("scipy.stats")


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sentence_ids_expand_lengths():
    assert sentence_ids(torch.tensor([2, 3, 1]), 6).tolist() == [0, 0, 1, 1, 1, 2]


def test_subsampling_keeps_each_word_with_its_probability():
    keep = torch.tensor([1.0, 0.5, 0.1, 0.9], dtype=torch.float64)
    n = 200_000
    words = torch.arange(4).repeat(n // 4)
    sentences = torch.arange(n) // 7
    kept, kept_sentences = subsample(words, sentences, keep, _generator())
    counts = torch.bincount(kept, minlength=4).double() / (n // 4)
    sigma = torch.sqrt(keep * (1 - keep) / (n // 4))
    assert (torch.abs(counts - keep) <= 5 * sigma + 1e-12).all(), (counts, keep)
    assert counts[0] == 1.0  # probability 1 is never dropped
    # survivors keep their order and their sentence
    positions = torch.nonzero(torch.rand(n, generator=_generator(), dtype=torch.float64) < keep[words]).squeeze(1)
    assert torch.equal(kept, words[positions]) and torch.equal(kept_sentences, sentences[positions])


def test_windows_shrink_uniformly_and_stay_inside_sentences():
    window, n = 5, 60_000
    words = torch.arange(n)
    sentences = torch.arange(n) // 1000
    context, mask = context_windows(words, sentences, window, _generator())
    offsets = torch.tensor([-5, -4, -3, -2, -1, 1, 2, 3, 4, 5])
    assert torch.equal(context[mask], (torch.arange(n)[:, None] + offsets)[mask])  # the neighbour at each offset
    assert (sentences[context][mask] == sentences[:, None].expand_as(mask)[mask]).all()  # never across sentences
    interior = (torch.arange(n) % 1000 >= window) & (torch.arange(n) % 1000 < 1000 - window)
    reach = mask[interior].sum(dim=1) // 2
    assert torch.equal(mask[interior][:, :window].flip(1), mask[interior][:, window:])  # symmetric
    observed = torch.bincount(reach, minlength=window + 1)[1:].numpy()
    assert observed.sum() == interior.sum()
    assert stats.chisquare(observed).pvalue > 1e-4  # reach uniform on 1 .. window
    # a word at distance d is in the window with probability (window - d + 1) / window
    share = mask[interior][:, window:].double().mean(dim=0)
    np.testing.assert_allclose(share.numpy(), [(window - d + 1) / window for d in range(1, window + 1)], atol=0.01)
    # without shrinking, every interior position sees the whole window
    _, full = context_windows(words, sentences, window, _generator(), shrink=False)
    assert full[interior].all()
    # sentence edges: the first word of a sentence has no left context
    assert not mask[::1000, :window].any()


def test_skipgram_pairs_take_the_context_word_as_input_and_the_centre_as_target():
    words = torch.tensor([10, 11, 12, 13])
    sentences = torch.tensor([0, 0, 0, 1])
    context, mask = context_windows(words, sentences, 2, _generator(), shrink=False)
    inputs, targets = skipgram_pairs(words, context, mask)
    assert sorted(zip(inputs.tolist(), targets.tolist())) == sorted(
        [(11, 10), (12, 10), (10, 11), (12, 11), (10, 12), (11, 12)]
    )


def test_negatives_follow_the_unigram_distribution_to_the_three_quarters():
    counts = np.array([50_000, 9_000, 3_000, 700, 120, 30, 5, 5, 1])
    sampler = NegativeSampler(counts, 0.75)
    expected = counts**0.75 / (counts**0.75).sum()
    np.testing.assert_allclose(sampler.probabilities().numpy(), expected, rtol=1e-9, atol=1e-12)
    draws = sampler.draw((400_000,), _generator(1))
    observed = np.bincount(draws.numpy(), minlength=len(counts))
    assert stats.chisquare(observed, expected * observed.sum()).pvalue > 1e-4
    # a plain unigram draw would be rejected: the test can fail
    unigram = counts / counts.sum()
    assert stats.chisquare(observed, unigram * observed.sum()).pvalue < 1e-10



def test_alias_tables_are_exact():
    rng = np.random.default_rng(0)
    for p in (rng.dirichlet(np.ones(50)), np.array([0.5, 0.5]), np.array([1.0]), rng.dirichlet(np.full(1000, 0.05))):
        keep, alias = alias_table(p)
        implied = (keep + np.bincount(alias, weights=1.0 - keep, minlength=len(p))) / len(p)
        np.testing.assert_allclose(implied, p, rtol=1e-9, atol=1e-15)
        assert ((0 <= keep) & (keep <= 1 + 1e-12)).all()


def test_negative_sampler_rejects_bad_counts():
    with pytest.raises(ValueError, match="positive counts"):
        NegativeSampler(np.array([3, 0, 1]))
    with pytest.raises(ValueError, match="positive counts"):
        NegativeSampler(np.array([]))


def test_draws_are_a_function_of_the_seed():
    sampler = NegativeSampler(np.array([5, 3, 2]))
    assert torch.equal(sampler.draw((50,), _generator(7)), sampler.draw((50,), _generator(7)))
    assert not torch.equal(sampler.draw((50,), _generator(7)), sampler.draw((50,), _generator(8)))
