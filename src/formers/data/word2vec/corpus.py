"""A word2vec corpus on disk: encoded once into memory-mapped word ids, read back in sentence-aligned chunks.

:func:`prepare_corpus` makes two streaming passes over the text, so a corpus larger than memory works: the first
builds the :class:`~formers.data.word2vec.vocabulary.Vocabulary`, the second writes each sentence's kept word ids
(out-of-vocabulary words dropped, as gensim drops them before windows are drawn) to ``tokens.bin`` (uint32) and the
end offset of each sentence to ``sentences.bin`` (int64). Sentences longer than ``max_sentence_len`` words are cut
into pieces of that length (gensim truncates them at 10,000; the C tool cuts at 1,000).

:class:`Word2VecLoader` yields one chunk of whole sentences per step, about ``words_per_batch`` kept words, in
corpus order (gensim and the C tool do not shuffle either). Each chunk carries its own seed, a pure function of
``(seed, epoch, chunk)``, from which the task draws subsampling, windows and negatives on the device; so a run is
reproducible and resumes exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from formers.data.word2vec.vocabulary import (
    Vocabulary,
    build_vocabulary,
    read_sentences,
)
from formers.files import atomic_file

TOKENS_FILE, SENTENCES_FILE, VOCAB_FILE, META_FILE = "tokens.bin", "sentences.bin", "vocab.txt", "meta.json"
MAX_SENTENCE_LEN = 10_000


@dataclass
class CorpusMeta:
    """What :func:`prepare_corpus` read and kept (``meta.json``)."""

    sources: list[str]
    tokenizer: str
    min_count: int
    max_vocab_size: int | None
    vocab_size: int
    total_words: int  # words read, in the vocabulary or not
    kept_words: int  # words written to tokens.bin
    num_sentences: int  # pieces written to sentences.bin
    max_sentence_len: int


def prepare_corpus(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    tokenizer: str = "whitespace",
    min_count: int = 5,
    max_vocab_size: int | None = None,
    max_sentence_len: int = MAX_SENTENCE_LEN,
) -> CorpusMeta:
    """Builds the vocabulary and encodes the corpus into ``out_dir`` (two streaming passes over the text).

    Args:
        paths: UTF-8 text file(s), ``.gz`` allowed, one sentence per line.
        out_dir: created if needed; receives ``vocab.txt``, ``tokens.bin``, ``sentences.bin`` and ``meta.json``
            (each written atomically, ``meta.json`` last).
        tokenizer: how lines split into words (see :data:`~formers.data.word2vec.vocabulary.WORD_SPLITTERS`).
        min_count: fewest occurrences of a kept word.
        max_vocab_size: bound on the counting table (gensim's pruning); ``None``: unbounded.
        max_sentence_len: longer sentences are cut into pieces of this many kept words.

    Returns:
        The :class:`CorpusMeta` written to ``meta.json``.

    Raises:
        ValueError: an empty corpus or no word reaching ``min_count`` (see :func:`build_vocabulary`).
    """
    if max_sentence_len < 2:
        raise ValueError(f"max_sentence_len must be >= 2, got {max_sentence_len}")
    sources = [str(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = build_vocabulary(read_sentences(sources, tokenizer), min_count, max_vocab_size, source=", ".join(sources))
    kept = num_pieces = 0
    with atomic_file(out / TOKENS_FILE) as tok_tmp, atomic_file(out / SENTENCES_FILE) as sent_tmp:
        with open(tok_tmp, "wb") as tok_fh, open(sent_tmp, "wb") as sent_fh:
            ids: list[int] = []
            ends: list[int] = []
            index = vocab.index
            for sentence in read_sentences(sources, tokenizer):
                encoded = [index[w] for w in sentence if w in index]
                for start in range(0, len(encoded), max_sentence_len):
                    piece = encoded[start : start + max_sentence_len]
                    ids += piece
                    kept += len(piece)
                    ends.append(kept)
                if len(ids) >= 1 << 20:  # flush about 4 MB at a time
                    np.asarray(ids, dtype=np.uint32).tofile(tok_fh)
                    np.asarray(ends, dtype=np.int64).tofile(sent_fh)
                    num_pieces += len(ends)
                    ids, ends = [], []
            np.asarray(ids, dtype=np.uint32).tofile(tok_fh)
            np.asarray(ends, dtype=np.int64).tofile(sent_fh)
            num_pieces += len(ends)
    vocab.save(out / VOCAB_FILE)
    meta = CorpusMeta(
        sources, tokenizer, min_count, max_vocab_size, len(vocab), vocab.total_words, kept, num_pieces, max_sentence_len
    )
    with atomic_file(out / META_FILE) as tmp:
        tmp.write_text(json.dumps(asdict(meta), indent=2), encoding="utf-8")
    return meta


class EncodedCorpus:
    """A prepared corpus folder opened as memory maps (nothing is read until a chunk is).

    Args:
        folder: a folder written by :func:`prepare_corpus`.

    Attributes:
        meta: its :class:`CorpusMeta`.
        vocab: its :class:`Vocabulary` (with the corpus's total word count).
        tokens: ``(N,)`` uint32 memory map of word ids.
        sentence_ends: ``(S,)`` int64 memory map of sentence end offsets into ``tokens``.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise FileNotFoundError(f"{os.fspath(folder)!r} holds no {META_FILE}: prepare it with prepare_corpus first")
        self.folder = folder
        self.meta = CorpusMeta(**json.loads((folder / META_FILE).read_text(encoding="utf-8")))
        self.vocab = Vocabulary.load(folder / VOCAB_FILE)
        self.vocab.total_words, self.vocab.num_sentences = self.meta.total_words, self.meta.num_sentences
        self.tokens = self._memmap(TOKENS_FILE, np.uint32, self.meta.kept_words)
        self.sentence_ends = self._memmap(SENTENCES_FILE, np.int64, self.meta.num_sentences)

    def _memmap(self, name: str, dtype: type, expected: int) -> np.ndarray:
        path = self.folder / name
        size = path.stat().st_size // np.dtype(dtype).itemsize
        if size != expected:
            raise ValueError(f"{os.fspath(path)} holds {size} entries, {self.folder / META_FILE} says {expected}")
        return np.memmap(path, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype)

    def __len__(self) -> int:
        return self.meta.kept_words

    def chunk_bounds(self, words_per_batch: int) -> np.ndarray:
        """Splits the corpus into runs of whole sentences of at most ``words_per_batch`` words each.

        A sentence longer than ``words_per_batch`` is a chunk of its own, cut at ``words_per_batch``.

        Returns:
            ``(C + 1,)`` int64 token offsets; chunk ``c`` is ``tokens[b[c] : b[c + 1]]``.
        """
        if words_per_batch < 1:
            raise ValueError(f"words_per_batch must be >= 1, got {words_per_batch}")
        ends, bounds, start = self.sentence_ends, [0], 0
        while start < len(self):
            last = int(np.searchsorted(ends, start + words_per_batch, side="right")) - 1  # last sentence that fits
            end = int(ends[last]) if last >= 0 and ends[last] > start else min(start + words_per_batch, len(self))
            bounds.append(end)
            start = end
        return np.asarray(bounds, dtype=np.int64)

    def chunk(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The words of ``tokens[start:end]`` and the sentence lengths they split into.

        Returns:
            ``(words (n,) int64, sentence_lengths (s,) int64)`` with ``sentence_lengths.sum() == n``.
        """
        words = torch.from_numpy(np.asarray(self.tokens[start:end], dtype=np.int64))
        lo = int(np.searchsorted(self.sentence_ends, start, side="right"))
        hi = int(np.searchsorted(self.sentence_ends, end, side="left"))
        cuts = np.concatenate([[start], np.asarray(self.sentence_ends[lo:hi]), [end]])
        cuts = np.unique(cuts)  # a chunk may begin or end inside a cut sentence
        return words, torch.from_numpy(np.diff(cuts).astype(np.int64))


def chunk_seed(seed: int, epoch: int, chunk: int) -> int:
    """The seed of one chunk's random draws: a pure function of ``(seed, epoch, chunk)`` below ``2**63``."""
    return int(np.random.SeedSequence([seed, epoch, chunk]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class Word2VecLoader:
    """Batches of whole sentences in corpus order, one per Trainer step (an ``EpochLoader``).

    Args:
        corpus: the :class:`EncodedCorpus`.
        words_per_batch: kept words per chunk (before subsampling): the work of one Trainer step.
        seed: base seed of every chunk's random draws.
        epochs: passes the run makes, for ``progress``.

    Yields:
        ``{"words": (n,) int64, "sentence_lengths": (s,) int64, "seed": int, "progress": float, "progress_end":
        float}``: the fractions of the run's words (``epochs`` passes) trained before and after this chunk, which set
        the learning rate (gensim decays it by the same measure).
    """

    def __init__(self, corpus: EncodedCorpus, words_per_batch: int = 100_000, seed: int = 0, epochs: int = 1) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
        if len(corpus) == 0:
            raise ValueError(f"corpus {os.fspath(corpus.folder)!r} has no words in its vocabulary to train on")
        self.corpus, self.seed, self.words_per_batch, self.epochs = corpus, seed, words_per_batch, epochs
        self.bounds = corpus.chunk_bounds(words_per_batch)
        self.epoch = 0
        self.position = 0  # next chunk of the epoch

    def set_epoch(self, epoch: int) -> None:
        """Starts the next iteration at the first chunk of ``epoch``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        """The next chunk of the current epoch, so a resumed run skips consumed chunks without reading them (the
        Trainer restores the epoch with :meth:`set_epoch` first)."""
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor | int]]:
        while self.position < len(self):
            c = self.position
            words, lengths = self.corpus.chunk(int(self.bounds[c]), int(self.bounds[c + 1]))
            self.position += 1
            start, end = ((self.epoch + int(b) / len(self.corpus)) / self.epochs for b in self.bounds[c : c + 2])
            yield {"words": words, "sentence_lengths": lengths, "seed": chunk_seed(self.seed, self.epoch, c),
                   "progress": start, "progress_end": end}
        self.position = 0  # a finished epoch iterates again from its start

    def __repr__(self) -> str:
        return (
            f"Word2VecLoader(words={len(self.corpus)}, words_per_batch={self.words_per_batch}, chunks={len(self)}, "
            f"seed={self.seed}, epoch={self.epoch})"
        )
