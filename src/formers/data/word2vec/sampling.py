"""word2vec's random draws, vectorised over a whole chunk of words on its device (no Python loop over words).

Given a chunk of kept word ids and its sentence lengths (from :class:`~formers.data.word2vec.corpus.Word2VecLoader`):

1. :func:`subsample` drops each occurrence of word ``w`` with probability ``1 - keep[w]`` (the C tool's and gensim's
   frequent-word subsampling); the survivors close up, so windows reach past dropped words as in both references.
2. :func:`context_windows` draws each position's window ``b`` uniformly in ``1 .. window`` (the "shrinking window"
   that weights near words more) and lays the ``2 * window`` neighbours of every position out as a
   ``(n, 2 * window)`` table with a mask: in the sentence, within ``b``. Skip-gram flattens it into pairs
   (:func:`skipgram_pairs`); CBOW averages each row.
3. :class:`NegativeSampler` draws negatives from ``count ** 0.75`` by inverse transform sampling: a uniform integer
   against an exact cumulative table (``torch.searchsorted``), not the C tool's 1e8-entry table.

All draws come from one ``torch.Generator`` per chunk, so a chunk's pairs are a pure function of its seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

CUMULATIVE_DOMAIN = 1 << 52
"""Integer resolution of the negative-sampling table (the C tool's table has 1e8 slots, gensim's 2**31 - 1)."""


def sentence_ids(lengths: Tensor, num_words: int) -> Tensor:
    """Sentence index of every word of a chunk.

    Args:
        lengths: ``(S,)`` int64 sentence lengths summing to ``num_words``.
        num_words: ``n``, the chunk's length (passed so no device sync is needed).

    Returns:
        ``(n,)`` int64, e.g. lengths ``[2, 3]`` -> ``[0, 0, 1, 1, 1]``.
    """
    sentences = torch.arange(lengths.shape[0], device=lengths.device)
    return torch.repeat_interleave(sentences, lengths, output_size=num_words)


def subsample(words: Tensor, sentences: Tensor, keep_probability: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Keeps each word with its probability; returns the survivors (in order) and their sentence indices.

    Args:
        words: ``(n,)`` int64 word ids.
        sentences: ``(n,)`` sentence index of each word.
        keep_probability: ``(V,)`` float per word id (:meth:`Vocabulary.keep_probabilities`).
        generator: the chunk's generator, on the words' device.

    Returns:
        ``(words (m,), sentences (m,))`` with ``m <= n``.
    """
    draw = torch.rand(words.shape, generator=generator, device=words.device, dtype=keep_probability.dtype)
    keep = draw < keep_probability[words]
    return words[keep], sentences[keep]


def context_windows(
    words: Tensor, sentences: Tensor, window: int, generator: torch.Generator, shrink: bool = True
) -> tuple[Tensor, Tensor]:
    """The neighbours of every position within a randomly shrunk window, inside its sentence.

    Position ``i`` draws ``b_i`` uniformly from ``1 .. window`` (``window`` when ``shrink`` is off) and sees the words
    at ``i - b_i .. i - 1`` and ``i + 1 .. i + b_i`` that belong to its sentence.

    Args:
        words: ``(n,)`` int64 word ids (after subsampling).
        sentences: ``(n,)`` sentence index of each word, non-decreasing.
        window: the largest reach ``W`` on each side.
        generator: the chunk's generator.
        shrink: draw ``b_i`` (word2vec's default); ``False`` uses the full window everywhere.

    Returns:
        ``(context (n, 2W) int64 word ids, mask (n, 2W) bool)``; columns are offsets ``-W .. -1, 1 .. W``; masked-out
        entries hold an arbitrary valid id.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n, device = words.shape[0], words.device
    offsets = torch.cat([torch.arange(-window, 0, device=device), torch.arange(1, window + 1, device=device)])  # (2W,)
    if shrink:
        reach = torch.randint(1, window + 1, (n,), generator=generator, device=device)  # (n,)
    else:
        reach = torch.full((n,), window, device=device)
    position = torch.arange(n, device=device)[:, None] + offsets[None, :]  # (n, 2W)
    inside = (position >= 0) & (position < n)
    position = position.clamp(0, max(n - 1, 0))
    mask = inside & (offsets.abs()[None, :] <= reach[:, None]) & (sentences[position] == sentences[:, None])
    return words[position], mask


def skipgram_pairs(words: Tensor, context: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Flattens context windows into skip-gram ``(input, target)`` pairs.

    As in the C tool and gensim, the context word is the input (its vector is updated) and the window's centre is the
    word predicted.

    Args:
        words: ``(n,)`` centre word ids.
        context: ``(n, 2W)`` neighbour ids; ``mask``: ``(n, 2W)`` which are in the window.

    Returns:
        ``(inputs (P,), targets (P,))``, ``P = mask.sum()``, ordered by centre then offset.
    """
    centre = torch.arange(words.shape[0], device=words.device)[:, None].expand_as(mask)  # (n, 2W)
    return context[mask], words[centre[mask]]


class NegativeSampler:
    """Draws words with probability proportional to ``count ** exponent`` (word2vec's unigram^0.75).

    Args:
        counts: ``(V,)`` word counts.
        exponent: the smoothing power (gensim's ``ns_exponent``, 0.75).
    """

    def __init__(self, counts: np.ndarray | Tensor, exponent: float = 0.75) -> None:
        weights = np.asarray(counts, dtype=np.float64) ** exponent
        if weights.ndim != 1 or weights.shape[0] == 0 or not (weights > 0).all():
            raise ValueError(f"counts must be a non-empty 1-D array of positive counts, got shape {weights.shape}")
        cumulative = np.rint(np.cumsum(weights) / weights.sum() * CUMULATIVE_DOMAIN).astype(np.int64)
        cumulative[-1] = CUMULATIVE_DOMAIN
        self.cumulative = torch.from_numpy(cumulative)  # (V,) ends of each word's interval
        self.exponent = exponent

    def probabilities(self) -> Tensor:
        """``(V,)`` float64 probability of each word under the table."""
        return torch.diff(self.cumulative, prepend=self.cumulative.new_zeros(1)).double() / CUMULATIVE_DOMAIN

    def to(self, device: torch.device | str) -> NegativeSampler:
        """Moves the table to ``device`` (in place) and returns ``self``."""
        self.cumulative = self.cumulative.to(device)
        return self

    def draw(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Word ids of ``shape``, drawn independently on the table's device."""
        device = self.cumulative.device
        ticket = torch.randint(0, CUMULATIVE_DOMAIN, shape, generator=generator, device=device)
        return torch.searchsorted(self.cumulative, ticket, right=True)
