"""Querying trained word vectors: nearest words, similarity, odd-one-out, analogies, and the standard evaluations.

:class:`WordVectors` follows gensim 4's ``KeyedVectors`` so results can be compared one to one: cosine similarity,
``most_similar`` as the cosine to the normalised mean of the unit input vectors (weights +1 / -1, the C tool's
``distance`` / ``word-analogy``), analogies by 3CosAdd, and ``evaluate_analogies`` / ``evaluate_pairs`` with
gensim's ``restrict_vocab`` and case handling. Unlike gensim, a word missing from the vocabulary in a query raises
:class:`UnknownWordError` (a ``KeyError`` and a ``ValueError``) naming it, and malformed evaluation lines raise
instead of being skipped.

Vectors load from and save to the word2vec C formats (text, binary; :mod:`formers.interop.word2vec_format`), to
formers' own folder (``vectors.safetensors`` + ``vocab.txt`` of ``word count`` lines, the C tool's
``-save-vocab`` format; count 0 when unknown), and load from a word2vec training checkpoint or run directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from formers.data.word2vec import Vocabulary
from formers.files import atomic_directory
from formers.hub import from_pretrained, resolve_checkpoint_dir
from formers.interop.word2vec_format import load_word2vec_format, save_word2vec_format

VECTORS_FILE, VOCAB_FILE = "vectors.safetensors", "vocab.txt"
FORMATS = ("formers", "text", "binary")


class UnknownWordError(KeyError, ValueError):
    """A query word is not in the vocabulary."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class AnalogySection:
    """One ``: section`` of an analogy file: questions answered correctly and questions evaluated."""

    name: str
    correct: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


@dataclass
class AnalogyResult:
    """Accuracy over all evaluated questions, per section, and over semantic / syntactic (``gram*``) sections.

    Attributes:
        sections: per-section counts, in file order.
        questions: question lines read; ``skipped``: those with a word outside the restricted vocabulary.
    """

    sections: list[AnalogySection] = field(default_factory=list)
    questions: int = 0
    skipped: int = 0

    def _accuracy(self, pick) -> float:
        chosen = [s for s in self.sections if pick(s)]
        total = sum(s.total for s in chosen)
        return sum(s.correct for s in chosen) / total if total else 0.0

    @property
    def correct(self) -> int:
        return sum(s.correct for s in self.sections)

    @property
    def total(self) -> int:
        return sum(s.total for s in self.sections)

    @property
    def accuracy(self) -> float:
        return self._accuracy(lambda s: True)

    @property
    def semantic_accuracy(self) -> float:
        return self._accuracy(lambda s: not s.name.startswith("gram"))

    @property
    def syntactic_accuracy(self) -> float:
        return self._accuracy(lambda s: s.name.startswith("gram"))


@dataclass
class PairsResult:
    """Correlation of cosine similarities with human scores over the pairs in the vocabulary."""

    spearman: float
    pearson: float
    pairs: int
    skipped: int

    @property
    def oov_ratio(self) -> float:
        """Fraction of pairs skipped for a word outside the restricted vocabulary."""
        return self.skipped / max(self.pairs + self.skipped, 1)


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (as ``scipy.stats.rankdata``)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


class WordVectors:
    """Words and their vectors, most frequent first.

    Args:
        words: ``V`` unique words; row ``i`` of ``vectors`` is ``words[i]``.
        vectors: ``(V, D)`` float tensor or array (kept as float32 on the CPU).
        counts: ``(V,)`` corpus counts when known.
    """

    def __init__(self, words: Sequence[str], vectors: Tensor | np.ndarray, counts: np.ndarray | None = None) -> None:
        vectors = torch.as_tensor(np.asarray(vectors) if not isinstance(vectors, Tensor) else vectors)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D (V, D), got shape {tuple(vectors.shape)}")
        if len(words) != vectors.shape[0]:
            raise ValueError(f"words has {len(words)} entries but vectors has {vectors.shape[0]} rows")
        self.words = list(words)
        self.vectors = vectors.detach().to("cpu", torch.float32).contiguous()
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("words must be unique")
        self._norms: Tensor | None = None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"WordVectors(words={len(self)}, dim={self.embed_dim})"

    @property
    def embed_dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def norms(self) -> Tensor:
        """``(V,)`` L2 norm of each vector."""
        if self._norms is None:
            self._norms = torch.linalg.vector_norm(self.vectors, dim=1)
        return self._norms

    def word_index(self, word: str) -> int:
        """Row of ``word``; raises :class:`UnknownWordError` naming it (and a differently cased match)."""
        if not isinstance(word, str):
            raise TypeError(f"word must be a str, got {type(word).__name__}")
        if word not in self.index:
            hint = next((f"; did you mean {w!r}?" for w in (word.lower(), word.capitalize()) if w in self.index), "")
            raise UnknownWordError(f"word {word!r} is not in the vocabulary ({len(self):,} words){hint}")
        return self.index[word]

    def __getitem__(self, word: str) -> Tensor:
        """``(D,)`` vector of ``word``."""
        return self.vectors[self.word_index(word)]

    def unit(self, word: str) -> Tensor:
        """``(D,)`` the vector of ``word`` scaled to unit length."""
        i = self.word_index(word)
        return self.vectors[i] / self.norms[i]

    # ------------------------------------------------------------------ queries

    def similarity(self, word1: str, word2: str) -> float:
        """Cosine similarity of two words."""
        return float(self.unit(word1) @ self.unit(word2))

    def _mean(self, positive: Sequence[str], negative: Sequence[str]) -> tuple[Tensor, list[int]]:
        keys = [(w, 1.0) for w in positive] + [(w, -1.0) for w in negative]
        if not keys:
            raise ValueError("most_similar needs at least one positive or negative word, got none")
        mean = torch.zeros(self.embed_dim)
        for word, weight in keys:
            mean += weight * self.unit(word)
        mean /= len(keys)
        return mean / torch.linalg.vector_norm(mean), [self.index[w] for w, _ in keys]

    def most_similar(
        self, positive: str | Sequence[str] = (), negative: str | Sequence[str] = (), topn: int = 10,
        restrict_vocab: int | None = None,
    ) -> list[tuple[str, float]]:
        """Words closest (cosine) to the normalised mean of the unit vectors of ``positive`` minus ``negative``.

        Args:
            positive, negative: words (or one word) weighted +1 and -1.
            topn: how many to return; the query words themselves are left out.
            restrict_vocab: search only the first (most frequent) this many words.

        Returns:
            ``[(word, cosine), ...]`` best first.
        """
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = [negative] if isinstance(negative, str) else list(negative)
        if topn < 1:
            raise ValueError(f"topn must be >= 1, got {topn}")
        mean, query = self._mean(positive, negative)
        limit = len(self) if restrict_vocab is None else min(restrict_vocab, len(self))
        sims = (self.vectors[:limit] @ mean) / self.norms[:limit]  # (limit,)
        sims[[i for i in query if i < limit]] = -torch.inf
        k = min(topn, limit - len({i for i in query if i < limit}))
        best = torch.topk(sims, max(k, 0))
        return [(self.words[i], float(s)) for s, i in zip(best.values.tolist(), best.indices.tolist())]

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        """``a`` is to ``b`` as ``c`` is to ...? (3CosAdd: nearest to ``b - a + c``), best first."""
        return self.most_similar(positive=[b, c], negative=[a], topn=topn)

    def doesnt_match(self, words: Sequence[str]) -> str:
        """The word furthest (cosine) from the normalised mean of the words' unit vectors."""
        words = list(words)
        if len(words) < 2:
            raise ValueError(f"doesnt_match needs at least 2 words, got {words}")
        units = torch.stack([self.unit(w) for w in words])  # (N, D)
        mean = units.mean(dim=0)
        sims = units @ (mean / torch.linalg.vector_norm(mean))  # (N,)
        return words[int(torch.argmin(sims))]

    # ------------------------------------------------------------------ evaluations

    def _ok_vocab(self, restrict_vocab: int, case_insensitive: bool) -> dict[str, int]:
        """Gensim's restricted lookup: the first ``restrict_vocab`` words; upper-cased, the most frequent casing wins."""
        if restrict_vocab < 1:
            raise ValueError(f"restrict_vocab must be >= 1, got {restrict_vocab}")
        kept = self.words[:restrict_vocab]
        fold = str.upper if case_insensitive else (lambda w: w)
        return {fold(w): i for i, w in reversed(list(enumerate(kept)))}

    def evaluate_analogies(
        self, path: str | os.PathLike[str], restrict_vocab: int = 300_000, case_insensitive: bool = True,
        batch_size: int = 1024,
    ) -> AnalogyResult:
        """Accuracy on a ``questions-words.txt`` style file (``: section`` lines, then ``a b c expected``).

        As gensim's ``evaluate_word_analogies``: a question is skipped when one of its words is not among the first
        ``restrict_vocab`` words; the answer is the best of the 5 nearest words to ``b - a + c`` (3CosAdd over the
        restricted vocabulary, the query rows left out) that is none of ``a, b, c`` (after case folding).

        Raises:
            ValueError: a question line before any section or without exactly 4 words (naming file and line).
        """
        path = Path(path)
        ok = self._ok_vocab(restrict_vocab, case_insensitive)
        fold = str.upper if case_insensitive else (lambda w: w)
        result, questions, owner = AnalogyResult(), [], []
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if line.startswith(": "):
                    result.sections.append(AnalogySection(line[2:].strip()))
                    continue
                if not line.strip():
                    continue
                if not result.sections:
                    raise ValueError(f"{os.fspath(path)}:{line_no}: a question before the first ': section' line")
                words = [fold(w) for w in line.split()]
                if len(words) != 4:
                    raise ValueError(f"{os.fspath(path)}:{line_no}: expected 4 words 'a b c expected', got {line.strip()!r}")
                result.questions += 1
                if not all(w in ok for w in words):
                    result.skipped += 1
                    continue
                questions.append([ok[w] for w in words])
                owner.append(len(result.sections) - 1)
        if not questions:
            return result
        limit = min(restrict_vocab, len(self))
        units = self.vectors[:limit] / self.norms[:limit, None]  # (R, D)
        q = torch.tensor(questions)  # (Q, 4): a, b, c, expected
        for start in range(0, len(q), batch_size):
            part = q[start : start + batch_size]
            mean = (units[part[:, 1]] + units[part[:, 2]] - units[part[:, 0]]) / 3.0  # (q, D)
            mean = mean / torch.linalg.vector_norm(mean, dim=1, keepdim=True)
            sims = mean @ units.T  # (q, R)
            sims.scatter_(1, part[:, :3], -torch.inf)
            top = torch.topk(sims, min(5, limit), dim=1).indices.tolist()
            for offset, (row, candidates) in enumerate(zip(part.tolist(), top)):
                ignore = {fold(self.words[i]) for i in row[:3]}
                predicted = None
                for i in candidates:  # gensim: the first not among a, b, c, else the last looked at
                    predicted = fold(self.words[i])
                    if predicted not in ignore:
                        break
                section = result.sections[owner[start + offset]]
                section.total += 1
                section.correct += int(predicted == fold(self.words[row[3]]))
        return result

    def evaluate_pairs(
        self, path: str | os.PathLike[str], delimiter: str = "\t", restrict_vocab: int = 300_000,
        case_insensitive: bool = True,
    ) -> PairsResult:
        """Spearman (and Pearson) correlation of cosine similarities with the scores of a WordSim-353 style file.

        Lines are ``word1<delimiter>word2<delimiter>score``; ``#`` lines and blank lines are comments. As gensim's
        ``evaluate_word_pairs``, pairs with a word outside the first ``restrict_vocab`` words are skipped.

        Raises:
            ValueError: a line that is not two words and a number (naming file and line), or no pair in vocabulary.
        """
        path = Path(path)
        ok = self._ok_vocab(restrict_vocab, case_insensitive)
        fold = str.upper if case_insensitive else (lambda w: w)
        gold, model, skipped = [], [], 0
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if line.startswith("#") or not line.strip():
                    continue
                parts = line.rstrip("\r\n").split(delimiter)
                try:
                    a, b, score = fold(parts[0]), fold(parts[1]), float(parts[2])
                    if len(parts) != 3:
                        raise ValueError
                except (ValueError, IndexError):
                    raise ValueError(f"{os.fspath(path)}:{line_no}: expected 'word1{delimiter}word2{delimiter}score', "
                                     f"got {line.strip()!r}") from None
                if a not in ok or b not in ok:
                    skipped += 1
                    continue
                ia, ib = ok[a], ok[b]
                gold.append(score)
                model.append(float(self.vectors[ia] @ self.vectors[ib] / (self.norms[ia] * self.norms[ib])))
        if not gold:
            raise ValueError(f"{os.fspath(path)}: no pair has both words among the first {restrict_vocab} words")
        g, m = np.asarray(gold), np.asarray(model)
        return PairsResult(_pearson(_ranks(g), _ranks(m)), _pearson(g, m), len(gold), skipped)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str], format: str = "formers") -> None:
        """Writes the vectors atomically.

        Args:
            path: a folder (``"formers"``: ``vectors.safetensors`` + ``vocab.txt``) or a file (C formats).
            format: ``"formers"``, ``"text"`` or ``"binary"`` (the word2vec C formats).
        """
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        if format != "formers":
            save_word2vec_format(path, self.words, self.vectors.numpy(), binary=format == "binary")
            return
        counts = self.counts if self.counts is not None else np.zeros(len(self), dtype=np.int64)
        vocab = Vocabulary(self.words, counts)
        with atomic_directory(path) as tmp:
            save_file({"vectors": self.vectors}, str(tmp / VECTORS_FILE))
            vocab.save(tmp / VOCAB_FILE)

    @classmethod
    def load(cls, path: str | os.PathLike[str], format: str | None = None) -> WordVectors:
        """Reads vectors saved by :meth:`save`, a C-format file, or a word2vec checkpoint / run directory.

        Args:
            path: a folder or a file.
            format: ``"formers"``, ``"text"``, ``"binary"`` or ``"checkpoint"``; ``None`` infers it: a folder with
                ``vectors.safetensors`` or with a checkpoint, a ``.bin`` file (binary), else the file's bytes.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"vectors path {os.fspath(path)!r} does not exist")
        if format is None:
            if path.is_dir():
                format = "formers" if (path / VECTORS_FILE).is_file() else "checkpoint"
            else:
                format = "binary" if path.suffix == ".bin" else None  # type: ignore[assignment]
        if format in ("text", "binary", None) and path.is_file():
            words, vectors = load_word2vec_format(path, binary=None if format is None else format == "binary")
            return cls(words, torch.from_numpy(vectors))
        if format == "formers":
            vocab = Vocabulary.load(path / VOCAB_FILE)
            vectors = load_file(str(path / VECTORS_FILE))["vectors"]
            return cls(vocab.words, vectors, vocab.counts if vocab.counts.any() else None)
        if format == "checkpoint":
            return cls.from_checkpoint(path)
        raise ValueError(f"format must be one of {FORMATS + ('checkpoint',)} or None, got {format!r} for {os.fspath(path)!r}")

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> WordVectors:
        """The input vectors of a word2vec training checkpoint (or run directory's latest) and its ``vocab.txt``."""
        directory = resolve_checkpoint_dir(path)
        model = from_pretrained(directory)
        if getattr(model, "family", None) != "word2vec":
            raise ValueError(f"{os.fspath(directory)!r} holds a {getattr(model, 'family', type(model).__name__)!r} "
                             "model, expected a word2vec one")
        vocab = Vocabulary.load(directory / VOCAB_FILE)
        return cls(vocab.words, model.input_vectors, vocab.counts)
