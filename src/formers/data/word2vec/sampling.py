"""word2vec's random draws, vectorised over a whole chunk of words on its device (no Python loop over words).

Given a chunk of kept word ids and its sentence lengths (from :class:`~formers.data.word2vec.corpus.Word2VecLoader`):

1. :func:`subsample` drops each occurrence of word ``w`` with probability ``1 - keep[w]`` (the C tool's and gensim's
   frequent-word subsampling); the survivors close up, so windows reach past dropped words as in both references.
2. :func:`context_windows` draws each position's window ``b`` uniformly in ``1 .. window`` (the "shrinking window"
   that weights near words more) and lays the ``2 * window`` neighbours of every position out as a
   ``(n, 2 * window)`` table with a mask: in the sentence, within ``b``. Skip-gram flattens it into pairs
   (:func:`skipgram_pairs`); CBOW averages each row.
3. :class:`NegativeSampler` draws negatives from ``count ** 0.75`` with an alias table (two gathers per draw), not the
   C tool's 1e8-entry table.

All draws come from one ``torch.Generator`` per chunk, so a chunk's pairs are a pure function of its seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


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


def alias_table(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table (Vose's construction) of a discrete distribution.

    Draw ``i`` uniformly among the ``V`` columns, keep it with probability ``keep[i]``, else take ``alias[i]``: each
    outcome then comes up with exactly its probability, in O(1) per draw.

    Args:
        probabilities: ``(V,)`` non-negative, summing to 1.

    Returns:
        ``(keep (V,) float64, alias (V,) int64)``.
    """
    num = probabilities.shape[0]
    scaled = probabilities.astype(np.float64) * num
    keep, alias = np.ones(num), np.arange(num, dtype=np.int64)
    small = [i for i in range(num) if scaled[i] < 1.0]
    large = [i for i in range(num) if scaled[i] >= 1.0]
    while small and large:
        lo, hi = small.pop(), large[-1]
        keep[lo], alias[lo] = scaled[lo], hi  # column lo: lo itself, topped up by hi
        scaled[hi] -= 1.0 - scaled[lo]
        if scaled[hi] < 1.0:
            small.append(large.pop())
    return keep, alias  # columns left in either list are full (keep 1), up to rounding


class NegativeSampler:
    """Draws words with probability proportional to ``count ** exponent`` (word2vec's unigram^0.75).

    Uses an alias table (O(1) per draw: two gathers and a comparison) instead of the C tool's 1e8-slot table or
    gensim's binary search of a cumulative table; the distribution is the same, exact up to float64 rounding.

    Args:
        counts: ``(V,)`` word counts.
        exponent: the smoothing power (gensim's ``ns_exponent``, 0.75).
    """

    def __init__(self, counts: np.ndarray | Tensor, exponent: float = 0.75) -> None:
        weights = np.asarray(counts, dtype=np.float64) ** exponent
        if weights.ndim != 1 or weights.shape[0] == 0 or not (weights > 0).all():
            raise ValueError(f"counts must be a non-empty 1-D array of positive counts, got shape {weights.shape}")
        keep, alias = alias_table(weights / weights.sum())
        self.keep, self.alias = torch.from_numpy(keep), torch.from_numpy(alias)  # (V,) each
        self.exponent = exponent

    def probabilities(self) -> Tensor:
        """``(V,)`` float64 probability of each word under the table (what :meth:`draw` samples)."""
        num = self.keep.shape[0]
        direct = self.keep.cpu().double()
        return (direct + torch.zeros(num, dtype=torch.float64).index_add_(0, self.alias.cpu(), 1.0 - direct)) / num

    def to(self, device: torch.device | str) -> NegativeSampler:
        """Moves the table to ``device`` (in place) and returns ``self``."""
        self.keep, self.alias = self.keep.to(device), self.alias.to(device)
        return self

    def draw(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Word ids of ``shape``, drawn independently on the table's device."""
        device = self.keep.device
        column = torch.randint(0, self.keep.shape[0], shape, generator=generator, device=device)
        coin = torch.rand(shape, generator=generator, device=device, dtype=self.keep.dtype)
        return torch.where(coin < self.keep[column], column, self.alias[column])
