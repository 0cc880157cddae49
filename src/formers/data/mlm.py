"""Masked-LM pre-training data: BERT's token masking, next-sentence pairs, and a seeded epoch loader.

Masking follows the paper (Devlin et al. 2019, section 3.1 and appendix A.1): each maskable token is selected
with probability ``mlm_probability`` (15%); a selected token is replaced by ``[MASK]`` 80% of the time, by a
random token 10% of the time and kept 10% of the time, and only selected tokens carry a label (every other
label is ``-100``, ignored by the loss). ``[CLS]``, ``[SEP]``, ``[PAD]`` (and any other special id) are never
selected nor drawn as random replacements. Every row with a maskable token gets at least one selected token,
so no batch row is without a target (a 0.85**n event for an n-token row: negligible for real sentences).

Examples are built from documents given as lists of tokenized sentences (:func:`build_examples`):

- without next-sentence prediction, consecutive sentences of one document are packed into
  ``[CLS] A [SEP]`` rows of at most ``max_len`` tokens (RoBERTa's "DOC-SENTENCES" input);
- with it, BERT's ``create_pretraining_data.py``: a chunk of consecutive sentences is split into A and B;
  half the time B is replaced by sentences of another, random document (label 1 = NotNext, 0 = IsNext),
  giving ``[CLS] A [SEP] B [SEP]`` with token types 0 for ``[CLS] A [SEP]`` and 1 for ``B [SEP]``.

:class:`MLMLoader` re-masks every epoch (the "dynamic masking" of RoBERTa); the masks and the order of an
epoch are a pure function of ``(seed, epoch, batch index)``, so runs are reproducible and resumable.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from formers.data.buckets import bucket_length, check_pad_multiple
from formers.data.corpora import read_bible_en_es
from formers.layers.cross_entropy import (
    IGNORE_INDEX,  # the label of positions without a masked-LM target
)


def _check_fraction(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def mask_tokens(
    input_ids: Tensor,
    maskable: Tensor,
    mask_id: int,
    replacement_ids: Tensor,
    generator: torch.Generator,
    mlm_probability: float = 0.15,
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """BERT's masking of a batch of token ids.

    Args:
        input_ids: (B, T) token ids.
        maskable: (B, T) bool, True where a token may be selected (real, non-special tokens).
        mask_id: id of ``[MASK]``.
        replacement_ids: (R,) ids that random replacements are drawn from uniformly (the non-special vocabulary).
        generator: a CPU generator; the same generator state gives the same masks.
        mlm_probability: chance that a maskable token is selected (0.15 in the paper).
        mask_fraction: share of selected tokens replaced by ``[MASK]`` (0.8).
        random_fraction: share of selected tokens replaced by a random id (0.1); the rest stay unchanged.

    Returns:
        ``(masked_ids, labels)``, both (B, T): the corrupted input, and the original id at selected positions
        with :data:`IGNORE_INDEX` everywhere else.
    """
    _check_fraction("mlm_probability", mlm_probability)
    _check_fraction("mask_fraction", mask_fraction)
    _check_fraction("random_fraction", random_fraction)
    if mask_fraction + random_fraction > 1.0 + 1e-9:
        raise ValueError(f"mask_fraction + random_fraction must be <= 1, got {mask_fraction} + {random_fraction}")
    if maskable.shape != input_ids.shape or maskable.dtype != torch.bool:
        raise ValueError(
            f"maskable must be a bool tensor of the shape of input_ids {tuple(input_ids.shape)}, "
            f"got {maskable.dtype} {tuple(maskable.shape)}"
        )
    if replacement_ids.ndim != 1 or replacement_ids.numel() == 0:
        raise ValueError(f"replacement_ids must be a non-empty 1-D tensor, got shape {tuple(replacement_ids.shape)}")
    shape = input_ids.shape
    draw = torch.rand(shape, generator=generator)  # (B, T) selection
    selected = (draw < mlm_probability) & maskable
    # rows with maskable tokens but no selection get their lowest-draw maskable token
    empty = ~selected.any(dim=1) & maskable.any(dim=1)
    if mlm_probability > 0 and empty.any():
        forced = draw.masked_fill(~maskable, 2.0).argmin(dim=1)  # (B,)
        selected[empty, forced[empty]] = True
    labels = input_ids.masked_fill(~selected, IGNORE_INDEX)
    how = torch.rand(shape, generator=generator)  # (B, T) which corruption
    to_mask = selected & (how < mask_fraction)
    to_random = selected & (how >= mask_fraction) & (how < mask_fraction + random_fraction)
    pick = torch.randint(0, replacement_ids.numel(), shape, generator=generator)  # (B, T)
    masked = input_ids.clone()
    masked[to_mask] = mask_id
    masked[to_random] = replacement_ids[pick[to_random]]
    return masked, labels


@dataclass(frozen=True)
class MLMExample:
    """One pre-training row before padding: ``[CLS] A [SEP] (B [SEP])`` ids and their segment ids."""
    input_ids: list[int]
    token_type_ids: list[int]
    next_sentence_label: int | None = None  # 0 = IsNext, 1 = NotNext (None without NSP)


class MLMCollator:
    """Pads :class:`MLMExample` rows and masks them (see :func:`mask_tokens`).

    Args:
        vocab_size: size of the vocabulary.
        pad_id: padding id (right padding).
        mask_id: id of ``[MASK]``.
        special_ids: ids never selected nor used as random replacements (``[CLS]``, ``[SEP]``, ``[PAD]``,
            ``[UNK]``, ``[MASK]``...); ``pad_id`` and ``mask_id`` are always included.
        mlm_probability, mask_fraction, random_fraction: see :func:`mask_tokens`.
        pad_multiple: after masking, pad batches further to a length that is a multiple of this (at most
            ``max_len``, never cut): few batch shapes, so that a Trainer may replay its steps as CUDA graphs. The
            masks are drawn before this padding, so they are the same with or without it. 1: the longest row.
        max_len: the cap of that padding (the rows' own maximum length).
    """
    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        mask_id: int,
        special_ids: Sequence[int],
        mlm_probability: float = 0.15,
        mask_fraction: float = 0.8,
        random_fraction: float = 0.1,
        pad_multiple: int = 1,
        max_len: int | None = None,
    ) -> None:
        check_pad_multiple(pad_multiple)
        self.pad_multiple, self.max_len = pad_multiple, max_len
        for name, value in (("pad_id", pad_id), ("mask_id", mask_id), *(("special_ids", s) for s in special_ids)):
            if not 0 <= value < vocab_size:
                raise ValueError(f"{name} must be in [0, vocab_size={vocab_size}), got {value}")
        _check_fraction("mlm_probability", mlm_probability)
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        self.mask_id = mask_id
        self.special_ids = sorted(set(special_ids) | {pad_id, mask_id})
        keep = torch.ones(vocab_size, dtype=torch.bool)
        keep[self.special_ids] = False
        self.replacement_ids = keep.nonzero().flatten()  # (R,)
        self._special = torch.tensor(self.special_ids)
        self.mlm_probability = mlm_probability
        self.mask_fraction = mask_fraction
        self.random_fraction = random_fraction

    def pad(self, examples: Sequence[MLMExample]) -> dict[str, Tensor]:
        """Right-pads rows to the longest: ``input_ids``, ``token_type_ids``, ``padding_mask`` (all (B, T))."""
        if not examples:
            raise ValueError("examples must hold at least one row, got none")
        t = max(len(e.input_ids) for e in examples)
        ids = np.full((len(examples), t), self.pad_id, dtype=np.int64)
        types = np.zeros((len(examples), t), dtype=np.int64)
        lengths = np.array([len(e.input_ids) for e in examples])
        for row, e in enumerate(examples):
            ids[row, : len(e.input_ids)] = e.input_ids
            types[row, : len(e.token_type_ids)] = e.token_type_ids
        padding_mask = np.arange(t)[None, :] < lengths[:, None]  # (B, T)
        batch = {
            "input_ids": torch.from_numpy(ids),
            "token_type_ids": torch.from_numpy(types),
            "padding_mask": torch.from_numpy(padding_mask),
        }
        labels = [e.next_sentence_label for e in examples]
        if any(label is not None for label in labels):
            if any(label is None for label in labels):
                raise ValueError("examples mix rows with and without next_sentence_label")
            batch["next_sentence_labels"] = torch.tensor(labels, dtype=torch.long)
        return batch

    def __call__(self, examples: Sequence[MLMExample], generator: torch.Generator) -> dict[str, Tensor]:
        """A masked batch: the padded tensors of :meth:`pad` with masked ``input_ids`` and (B, T) ``labels``."""
        batch = self.pad(examples)
        ids = batch["input_ids"]
        maskable = batch["padding_mask"] & ~torch.isin(ids, self._special)
        batch["input_ids"], batch["labels"] = mask_tokens(
            ids, maskable, self.mask_id, self.replacement_ids, generator,
            self.mlm_probability, self.mask_fraction, self.random_fraction,
        )
        return self._extend(batch, bucket_length(ids.shape[1], self.pad_multiple, self.max_len))

    def _extend(self, batch: dict[str, Tensor], length: int) -> dict[str, Tensor]:
        """``batch`` right-padded to ``length`` positions: pad ids, segment 0, not real, no label."""
        extra = length - batch["input_ids"].shape[1]
        if extra <= 0:
            return batch
        fill = {"input_ids": self.pad_id, "token_type_ids": 0, "padding_mask": False, "labels": IGNORE_INDEX}
        for key, value in fill.items():
            t = batch[key]
            batch[key] = torch.cat([t, t.new_full((t.shape[0], extra), value)], dim=1)
        return batch


# ----------------------------------------------------------------------------- examples from documents


def _single(ids: list[int], cls_id: int, sep_id: int) -> MLMExample:
    return MLMExample([cls_id, *ids, sep_id], [0] * (len(ids) + 2))


def _truncate_pair(a: list[int], b: list[int], budget: int, rng: random.Random) -> None:
    """Trims the longer side (from its front or back at random, as BERT does) until ``len(a) + len(b) <= budget``."""
    while len(a) + len(b) > budget:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def build_examples(
    documents: Sequence[Sequence[Sequence[int]]],
    max_len: int,
    cls_id: int,
    sep_id: int,
    next_sentence: bool = False,
    seed: int = 0,
    short_seq_prob: float = 0.1,
) -> list[MLMExample]:
    """Pre-training rows from tokenized documents (each a list of sentences, each a list of ids).

    Args:
        documents: the corpus; sentences keep their order within a document.
        max_len: row length limit including ``[CLS]``/``[SEP]`` (at most the model's ``max_seq_len``).
        cls_id, sep_id: the special ids framing each row.
        next_sentence: build ``A [SEP] B`` pairs with 50% random B from another document (needs two documents).
        seed: seeds the choices (chunk lengths, split points, random documents).
        short_seq_prob: chance of a shorter target length, as BERT (rows of varied length for fine-tuning).

    Returns:
        The rows in document order. A sentence longer than a row is cut into row-sized pieces.
    """
    if max_len < (5 if next_sentence else 3):
        raise ValueError(f"max_len must be >= {5 if next_sentence else 3} to hold a token, got {max_len}")
    docs = [[list(s) for s in d if len(s) > 0] for d in documents]
    docs = [d for d in docs if d]
    if next_sentence and len(docs) < 2:
        raise ValueError(f"next_sentence needs at least 2 non-empty documents, got {len(docs)}")
    rng = random.Random(seed)
    budget = max_len - (3 if next_sentence else 2)
    # a sentence longer than the budget becomes several pieces
    docs = [[s[i : i + budget] for s in d for i in range(0, len(s), budget)] for d in docs]
    examples: list[MLMExample] = []
    for index, doc in enumerate(docs):
        target = rng.randint(2, budget) if rng.random() < short_seq_prob else budget
        chunk: list[list[int]] = []
        length = 0
        i = 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length + len(doc[i + 1]) > target:
                if not next_sentence:
                    examples.append(_single([t for s in chunk for t in s], cls_id, sep_id))
                else:
                    i -= _pair_from_chunk(chunk, docs, index, target, budget, rng, cls_id, sep_id, examples)
                chunk, length = [], 0
                target = rng.randint(2, budget) if rng.random() < short_seq_prob else budget
            i += 1
    return examples


def _pair_from_chunk(
    chunk: list[list[int]],
    docs: list[list[list[int]]],
    index: int,
    target: int,
    budget: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    out: list[MLMExample],
) -> int:
    """Appends one NSP row made from ``chunk``; returns how many of its sentences go back to the document."""
    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
    a = [t for s in chunk[:a_end] for t in s]
    unused = 0
    if len(chunk) == 1 or rng.random() < 0.5:
        label = 1
        other = rng.randrange(len(docs) - 1)
        other += other >= index  # any document but this one
        start = rng.randrange(len(docs[other]))
        b: list[int] = []
        for sentence in docs[other][start:]:
            b.extend(sentence)
            if len(b) >= max(target - len(a), 1):
                break
        unused = len(chunk) - a_end  # B did not use them: they start the next chunk
    else:
        label = 0
        b = [t for s in chunk[a_end:] for t in s]
    if len(a) >= budget:  # one long sentence: keep room for B
        a = a[: budget - 1]
    _truncate_pair(a, b, budget, rng)
    ids = [cls_id, *a, sep_id, *b, sep_id]
    types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    out.append(MLMExample(ids, types, label))
    return unused


# ----------------------------------------------------------------------------- loader


def batch_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator masking batch ``index`` of ``epoch``: a pure function of the three numbers."""
    mixed = np.random.SeedSequence([seed % 2**32, epoch, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(mixed[0]) << 32 | int(mixed[1]))


class MLMLoader:
    """Epoch-wise batches of masked rows: shuffled per ``(seed, epoch)`` and masked per batch.

    Args:
        examples: the rows (:func:`build_examples`).
        collator: pads and masks a list of rows.
        batch_size: rows per batch.
        seed: fixes orders and masks.
        shuffle: shuffle each epoch (False: fixed order, e.g. evaluation).
        drop_last: drop the final partial batch.
    """
    def __init__(
        self,
        examples: Sequence[MLMExample],
        collator: MLMCollator,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not examples:
            raise ValueError("examples must hold at least one row, got none")
        self.examples = list(examples)
        self.collator = collator
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def static_shapes(self) -> bool:
        """Whether the batches come in a few shapes (whole batches, lengths padded to multiples of the collator's
        ``pad_multiple`` > 1): a Trainer may then replay each shape's step as a CUDA graph."""
        return self.drop_last and self.collator.pad_multiple > 1

    def set_epoch(self, epoch: int) -> None:
        """Fixes the order and masks of the next iteration to those of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.examples)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        order = np.arange(len(self.examples))
        if self.shuffle:
            order = np.random.default_rng([self.seed % 2**32, self.epoch]).permutation(len(self.examples))
        for index in range(len(self)):
            rows = [self.examples[i] for i in order[index * self.batch_size : (index + 1) * self.batch_size]]
            yield self.collator(rows, batch_generator(self.seed, self.epoch, index))


def fixed_eval_batches(
    examples: Sequence[MLMExample], collator: MLMCollator, batch_size: int, seed: int = 1234
) -> list[dict[str, Tensor]]:
    """Held-out batches masked once with ``seed``: every evaluation scores the same masked positions."""
    return list(MLMLoader(examples, collator, batch_size, seed=seed, shuffle=False))


__all__ = [
    "IGNORE_INDEX",
    "MLMCollator",
    "MLMExample",
    "MLMLoader",
    "batch_generator",
    "build_examples",
    "fixed_eval_batches",
    "mask_tokens",
]


# ----------------------------------------------------------------------------- documents


def bible_documents() -> list[tuple[str, list[str]]]:
    """The King James Bible (public domain, embedded): one document per chapter (``"Gen.1"``), verses as sentences."""
    chapters: dict[str, list[str]] = {}
    for reference, english, _ in read_bible_en_es():
        chapters.setdefault(reference.rsplit(".", 1)[0], []).append(english)
    return list(chapters.items())


def text_documents(path: str | Path) -> list[tuple[str, list[str]]]:
    """A UTF-8 text file as documents: blocks separated by blank lines, one sentence per non-blank line."""
    documents: list[tuple[str, list[str]]] = []
    current: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            documents.append((f"doc{len(documents)}", current))
            current = []
    if current:
        documents.append((f"doc{len(documents)}", current))
    if not documents:
        raise ValueError(f"{path} holds no text")
    return documents


def split_documents(
    documents: list[tuple[str, list[str]]], heldout_every: int
) -> tuple[list[list[str]], list[list[str]]]:
    """(train, held-out) documents: document ``i`` is held out when ``i % heldout_every == heldout_every - 1``."""
    if heldout_every < 2:
        raise ValueError(f"heldout_every must be >= 2, got {heldout_every}")
    if len(documents) < heldout_every:
        raise ValueError(f"heldout_every={heldout_every} holds nothing out of {len(documents)} documents")
    train = [s for i, (_, s) in enumerate(documents) if i % heldout_every != heldout_every - 1]
    held = [s for i, (_, s) in enumerate(documents) if i % heldout_every == heldout_every - 1]
    return train, held
