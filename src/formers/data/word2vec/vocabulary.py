"""word2vec vocabulary: words split from lines, counted in one streaming pass, pruned and sorted as gensim does.

The corpus is read line by line (plain or gzip text, one sentence per line), never held in memory. Counting
follows gensim 4's ``Word2Vec.scan_vocab``: when ``max_vocab_size`` is set and the table grows past it, every
word seen fewer than ``min_reduce`` times is dropped and ``min_reduce`` grows by one (``gensim.utils.prune_vocab``),
so the counts of rare words are lower bounds, as in gensim and the C tool's ``ReduceVocab``. Words seen at least
``min_count`` times are kept, sorted by descending count (ties: first occurrence first; gensim's unstable argsort
orders ties arbitrarily).

The file format is the C tool's ``-save-vocab`` one, ``word count`` per line, which gensim reads as ``fvocab``.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from formers.files import atomic_file

_LETTERS = re.compile(r"[a-z]+")


def split_whitespace(line: str) -> list[str]:
    """Splits ``line`` at whitespace, keeping case and punctuation (gensim's ``LineSentence``, the C tool)."""
    return line.split()


def split_lowercase_letters(line: str) -> list[str]:
    """Lower-cases ``line`` and keeps runs of ``a``-``z`` (the tokenization of the shared corpus's gensim baseline)."""
    return _LETTERS.findall(line.lower())


WORD_SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "whitespace": split_whitespace,
    "lowercase_letters": split_lowercase_letters,
}
"""Names accepted as ``tokenizer`` by :func:`read_sentences` and the recipes."""


def _as_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("paths must name at least one corpus file, got an empty list")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {os.fspath(path)!r} does not exist")
    return paths


def read_sentences(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], tokenizer: str = "whitespace"
) -> Iterator[list[str]]:
    """Streams the words of each line of UTF-8 text files (``.gz`` files are decompressed on the fly).

    Args:
        paths: one file or several, read in order; one line is one sentence.
        tokenizer: a name of :data:`WORD_SPLITTERS`.

    Yields:
        The words of each line; lines without words are skipped.

    Raises:
        ValueError: unknown ``tokenizer``, or a line that is not UTF-8 (naming file and line).
        FileNotFoundError: a missing file.
    """
    if tokenizer not in WORD_SPLITTERS:
        raise ValueError(f"tokenizer must be one of {sorted(WORD_SPLITTERS)}, got {tokenizer!r}")
    split = WORD_SPLITTERS[tokenizer]
    for path in _as_paths(paths):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"{os.fspath(path)}:{line_no}: not UTF-8 ({e})") from None
                words = split(line)
                if words:
                    yield words


@dataclass
class Vocabulary:
    """The kept words, most frequent first, with their corpus counts.

    Attributes:
        words: the words; a word's id is its position.
        counts: ``(V,)`` int64 occurrences of each word in the corpus.
        total_words: words read, kept or not (gensim's ``corpus_total_words``).
        num_sentences: non-empty lines read.
    """

    words: list[str]
    counts: np.ndarray
    total_words: int = 0
    num_sentences: int = 0
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if self.counts.shape != (len(self.words),):
            raise ValueError(f"counts must have shape ({len(self.words)},) (one per word), got {self.counts.shape}")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            seen: set[str] = set()
            dup = next(w for w in self.words if w in seen or seen.add(w))  # type: ignore[func-returns-value]
            raise ValueError(f"words must be unique, got {dup!r} twice")

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    @property
    def retained_words(self) -> int:
        """Occurrences of kept words in the corpus (gensim's ``retain_total``)."""
        return int(self.counts.sum())

    def keep_probabilities(self, sample: float) -> np.ndarray:
        """Probability of keeping each occurrence of a word when subsampling frequent words.

        With ``t = sample * retained_words`` (or ``sample`` itself when ``sample >= 1``, gensim's shorthand scaled
        as there), a word of count ``c`` is kept with ``min(1, (sqrt(c / t) + 1) * t / c)``: the C tool's and
        gensim's formula (Mikolov et al. 2013b's ``1 - sqrt(t / f)`` with an added ``t / f`` term).

        Args:
            sample: the threshold; ``0`` keeps every word.

        Returns:
            ``(V,)`` float64 probabilities in ``(0, 1]``.
        """
        if not sample >= 0:
            raise ValueError(f"sample must be >= 0, got {sample}")
        counts = self.counts.astype(np.float64)
        if sample == 0:
            return np.ones_like(counts)
        threshold = sample * self.retained_words if sample < 1.0 else float(int(sample * (3 + np.sqrt(5)) / 2))
        return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * threshold / counts)

    def negative_weights(self, exponent: float = 0.75) -> np.ndarray:
        """``(V,)`` float64 probabilities of drawing each word as a negative sample: ``count ** exponent``, normalised."""
        weights = self.counts.astype(np.float64) ** exponent
        return weights / weights.sum()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes ``word count`` lines (the C tool's ``-save-vocab`` format) atomically."""
        for word in self.words:
            if not word or any(c.isspace() for c in word):
                raise ValueError(f"cannot save word {word!r}: words in a vocabulary file must be non-empty, no spaces")
        with atomic_file(path) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                for word, count in zip(self.words, self.counts.tolist()):
                    fh.write(f"{word} {count}\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Reads a ``word count`` file (order kept); malformed lines raise a ``ValueError`` naming file and line."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file {os.fspath(path)!r} does not exist")
        words, counts = [], []
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                parts = line.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    raise ValueError(f"{os.fspath(path)}:{line_no}: expected 'word count', got {line.rstrip()!r}")
                words.append(parts[0])
                counts.append(int(parts[1]))
        if not words:
            raise ValueError(f"vocabulary file {os.fspath(path)!r} is empty")
        return cls(words, np.array(counts, dtype=np.int64), total_words=sum(counts))


def count_words(sentences: Iterable[Sequence[str]], max_vocab_size: int | None = None) -> tuple[dict[str, int], int, int]:
    """One pass over ``sentences``: raw counts, pruned as gensim's ``scan_vocab`` when ``max_vocab_size`` is set.

    Returns:
        ``(counts by word in first-seen order, words read, sentences read)``.
    """
    if max_vocab_size is not None and max_vocab_size < 1:
        raise ValueError(f"max_vocab_size must be >= 1 or None, got {max_vocab_size}")
    counts: dict[str, int] = {}
    total = num_sentences = 0
    min_reduce = 1
    for sentence in sentences:
        for word in sentence:
            counts[word] = counts.get(word, 0) + 1
        total += len(sentence)
        num_sentences += 1
        if max_vocab_size is not None and len(counts) > max_vocab_size:
            counts = {w: c for w, c in counts.items() if c >= min_reduce}  # gensim.utils.prune_vocab
            min_reduce += 1
    return counts, total, num_sentences


def build_vocabulary(
    sentences: Iterable[Sequence[str]], min_count: int = 5, max_vocab_size: int | None = None, source: str = "corpus"
) -> Vocabulary:
    """Counts words in one streaming pass and keeps those seen at least ``min_count`` times, most frequent first.

    Args:
        sentences: lists of words, e.g. :func:`read_sentences`; iterated once.
        min_count: fewest occurrences a kept word has (gensim default 5).
        max_vocab_size: bound on the counting table during the pass (gensim's pruning); ``None``: no bound.
        source: how errors name the corpus (its path).

    Returns:
        The :class:`Vocabulary`.

    Raises:
        ValueError: ``min_count`` below 1, an empty corpus, or no word reaching ``min_count`` (naming the most
            frequent word and its count).
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
    counts, total, num_sentences = count_words(sentences, max_vocab_size)
    if total == 0:
        raise ValueError(f"{source} holds no words: nothing to build a vocabulary from")
    kept = [(w, c) for w, c in counts.items() if c >= min_count]
    if not kept:
        top_word, top_count = max(counts.items(), key=lambda item: item[1])
        raise ValueError(
            f"no word of {source} occurs min_count={min_count} times or more (the most frequent, {top_word!r}, occurs "
            f"{top_count} times in {total:,} words); lower min_count or give a larger corpus"
        )
    kept.sort(key=lambda item: -item[1])  # stable: ties stay in first-seen order
    words = [w for w, _ in kept]
    return Vocabulary(words, np.array([c for _, c in kept], dtype=np.int64), total, num_sentences)
