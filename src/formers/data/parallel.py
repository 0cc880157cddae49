"""Parallel text for translation: reading, encoding, token-budget batching and collation.

The pipeline the translation task iterates each epoch::

    text = read_parallel("train.en.gz", "train.de.gz")           # or read_tsv("train.tsv")
    dataset = ParallelDataset.from_text(text.src, text.tgt, tokenizer, max_len=256)
    loader = TranslationLoader(dataset, max_tokens=8192, seed=0)
    for epoch in range(num_epochs):
        loader.set_epoch(epoch)
        for batch in loader: ...                                   # see collate_translation

Nothing is dropped silently: blank lines and short TSV rows raise with file and line number unless
``skip_empty=True`` is asked for, and the dataset reports how many over-long pairs it rejected.
"""

from __future__ import annotations

import gzip
import io
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from formers.data.buckets import bucket_length, check_pad_multiple
from formers.data.tokenizers import SubwordTokenizer
from formers.layers import IGNORE_INDEX

# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ParallelText:
    """Aligned sentence pairs read from disk.

    Attributes:
        src: source sentences.
        tgt: target sentences, ``tgt[i]`` translating ``src[i]``.
        num_skipped: pairs dropped on the way: blank sides with ``skip_empty=True``, or a corpus
            loader's length filter. 0 when nothing was dropped.
    """

    src: list[str]
    tgt: list[str]
    num_skipped: int = 0

    def __len__(self) -> int:
        return len(self.src)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(zip(self.src, self.tgt))


def open_text(path: str | os.PathLike[str]) -> io.TextIOBase:
    """Opens a UTF-8 text file for reading, transparently gunzipping names ending in ``.gz``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {os.fspath(path)!r}")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")  # type: ignore[return-value]
    return open(path, encoding="utf-8", newline="\n")  # noqa: SIM115 (caller closes)


def _read_lines(path: str | os.PathLike[str]) -> list[str]:
    with open_text(path) as handle:
        # splitlines() would also split on \x85, \u2028 and friends inside sentences; only \n ends a line.
        return [line.rstrip("\r\n") for line in handle]


def read_parallel(
    src_path: str | os.PathLike[str], tgt_path: str | os.PathLike[str], skip_empty: bool = False
) -> ParallelText:
    """Reads two line-aligned files (plain or ``.gz``), line i of one translating line i of the other.

    Args:
        src_path: source-language file, one sentence a line.
        tgt_path: target-language file with the same number of lines.
        skip_empty: drop pairs where either side is blank (counted in ``num_skipped``) instead of raising.

    Returns:
        The pairs, in file order.

    Raises:
        ValueError: the files have different line counts (both files and counts are named), or a line
            is blank (file and 1-based line number named) and ``skip_empty`` is False.
    """
    src_lines, tgt_lines = _read_lines(src_path), _read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise ValueError(
            f"parallel files differ in line count: {os.fspath(src_path)!r} has {len(src_lines)} lines, "
            f"{os.fspath(tgt_path)!r} has {len(tgt_lines)}"
        )
    return _check_pairs(src_lines, tgt_lines, (src_path, tgt_path), skip_empty)


def read_tsv(
    path: str | os.PathLike[str], src_column: int = 0, tgt_column: int = 1, skip_empty: bool = False
) -> ParallelText:
    """Reads pairs from a tab-separated file (plain or ``.gz``), one pair a line.

    Args:
        path: the TSV file, e.g. ``src<TAB>tgt`` or ``id<TAB>src<TAB>tgt``.
        src_column: 0-based column holding the source sentence.
        tgt_column: 0-based column holding the target sentence.
        skip_empty: drop blank lines and pairs with a blank side (counted in ``num_skipped``) instead
            of raising. Lines with too few columns always raise.

    Returns:
        The pairs, in file order.

    Raises:
        ValueError: a line has fewer than ``max(src_column, tgt_column) + 1`` columns, or a side is
            blank and ``skip_empty`` is False; the file and 1-based line number are named.
    """
    if src_column == tgt_column or min(src_column, tgt_column) < 0:
        raise ValueError(f"src_column and tgt_column must be distinct and >= 0, got {src_column} and {tgt_column}")
    need = max(src_column, tgt_column) + 1
    src: list[str] = []
    tgt: list[str] = []
    skipped = 0
    for number, line in enumerate(_read_lines(path), start=1):
        if skip_empty and not line.strip():
            skipped += 1
            continue
        fields = line.split("\t")
        if len(fields) < need:
            raise ValueError(
                f"{os.fspath(path)!r} line {number}: expected at least {need} tab-separated columns, "
                f"got {len(fields)}: {line[:80]!r}"
            )
        src.append(fields[src_column])
        tgt.append(fields[tgt_column])
    checked = _check_pairs(src, tgt, (path, path), skip_empty, tsv_columns=(src_column, tgt_column))
    return ParallelText(checked.src, checked.tgt, checked.num_skipped + skipped)


def _check_pairs(
    src: list[str],
    tgt: list[str],
    paths: tuple[str | os.PathLike[str], str | os.PathLike[str]],
    skip_empty: bool,
    tsv_columns: tuple[int, int] | None = None,
) -> ParallelText:
    keep_src: list[str] = []
    keep_tgt: list[str] = []
    skipped = 0
    for number, (s, t) in enumerate(zip(src, tgt), start=1):
        blank_side = 0 if not s.strip() else 1 if not t.strip() else None
        if blank_side is None:
            keep_src.append(s)
            keep_tgt.append(t)
        elif skip_empty:
            skipped += 1
        else:
            # Without skip_empty no row was dropped, so `number` is the file's 1-based line number.
            what = f"column {tsv_columns[blank_side]} is blank" if tsv_columns else "is blank"
            raise ValueError(
                f"{os.fspath(paths[blank_side])!r} line {number}: {what}; every sentence needs text "
                "(pass skip_empty=True to drop such pairs)"
            )
    return ParallelText(keep_src, keep_tgt, skipped)


# ----------------------------------------------------------------------------- dataset


class ParallelDataset(torch.utils.data.Dataset):
    """Encoded translation pairs: item i is ``(src_ids, tgt_ids)``, lists of ids without special tokens.

    The collator adds ``<s>``/``</s>`` to targets, so a pair's padded lengths are
    ``(len(src_ids), len(tgt_ids) + 1)``; :attr:`lengths` returns exactly these.

    Args:
        src_ids: encoded source sentences, each non-empty.
        tgt_ids: encoded target sentences, each non-empty, aligned with ``src_ids``.
        max_len: if given, pairs with ``len(src) > max_len`` or ``len(tgt) + 1 > max_len`` are rejected
            (not truncated); pass the model's ``max_seq_len``. None keeps every pair.

    Attributes:
        num_rejected: how many pairs ``max_len`` rejected.

    Raises:
        ValueError: misaligned inputs, an empty sequence, or ``max_len`` rejecting every pair.
    """

    def __init__(self, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], max_len: int | None = None):
        if len(src_ids) != len(tgt_ids):
            raise ValueError(f"src_ids and tgt_ids must align: got {len(src_ids)} and {len(tgt_ids)} sequences")
        if max_len is not None and (not isinstance(max_len, int) or max_len < 2):
            raise ValueError(f"max_len must be None or an int >= 2 (a target needs bos/eos + 1 token), got {max_len!r}")
        for name, seqs in (("src_ids", src_ids), ("tgt_ids", tgt_ids)):
            for i, seq in enumerate(seqs):
                if len(seq) == 0:
                    raise ValueError(f"{name}[{i}] is empty; every sentence must encode to at least one token")
        pairs = [(list(s), list(t)) for s, t in zip(src_ids, tgt_ids)]
        total = len(pairs)
        if max_len is not None:
            pairs = [(s, t) for s, t in pairs if len(s) <= max_len and len(t) + 1 <= max_len]
            if total and not pairs:
                longest = min(max(len(s), len(t) + 1) for s, t in zip(src_ids, tgt_ids))
                raise ValueError(
                    f"max_len={max_len} rejects all {total} pairs (the shortest pair needs {longest}); "
                    "raise max_len or pass max_len=None to keep everything"
                )
        self.max_len = max_len
        self.num_rejected = total - len(pairs)
        self._src = [s for s, _ in pairs]
        self._tgt = [t for _, t in pairs]

    @classmethod
    def from_text(
        cls,
        src_texts: Sequence[str],
        tgt_texts: Sequence[str],
        tokenizer: SubwordTokenizer,
        max_len: int | None = None,
    ) -> ParallelDataset:
        """Encodes sentence pairs with ``tokenizer`` (no special tokens) and applies the ``max_len`` filter."""
        if len(src_texts) != len(tgt_texts):
            raise ValueError(f"src_texts and tgt_texts must align: got {len(src_texts)} and {len(tgt_texts)} sentences")
        return cls(tokenizer.encode_batch(list(src_texts)), tokenizer.encode_batch(list(tgt_texts)), max_len=max_len)

    def __len__(self) -> int:
        return len(self._src)

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        return self._src[index], self._tgt[index]

    @property
    def lengths(self) -> list[tuple[int, int]]:
        """Per pair, the padded-tensor lengths ``(S, T) = (len(src), len(tgt) + 1)`` the collator produces."""
        return [(len(s), len(t) + 1) for s, t in zip(self._src, self._tgt)]


# ----------------------------------------------------------------------------- batching


class TokenBucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar-length pairs whose padded size stays within a token budget.

    A batch of n pairs costs ``n * max_S + n * max_T`` tokens (its padded source plus target tensors),
    which is kept ``<= max_tokens``. Pairs are sorted by ``(S, T)`` (ties in an order shuffled per
    epoch) and packed greedily, so each batch is a length bucket with little padding; then the batch
    order is shuffled. All randomness comes from ``(seed, epoch)``: the same pair gives the same
    batches, a new epoch (:meth:`set_epoch`) gives a new order.

    Args:
        lengths: per example, ``(S, T)`` padded lengths (e.g. :attr:`ParallelDataset.lengths`), or a
            single int when one sequence is all that is batched.
        max_tokens: token budget per batch.
        shuffle: shuffle tie order and batch order; False gives a fixed sorted order.
        seed: base seed.
        sort_by_length: pack length-sorted examples (buckets); False packs them in (shuffled) index order.

    Raises:
        ValueError: ``max_tokens`` is not positive, or one example alone exceeds it (index and size named).
    """

    def __init__(
        self,
        lengths: Sequence[tuple[int, int]] | Sequence[int],
        max_tokens: int,
        shuffle: bool = True,
        seed: int = 0,
        sort_by_length: bool = True,
    ) -> None:
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
        self._lengths: list[tuple[int, ...]] = [(n,) if isinstance(n, int) else tuple(n) for n in lengths]
        for i, lens in enumerate(self._lengths):
            if sum(lens) > max_tokens:
                raise ValueError(
                    f"example {i} alone needs {sum(lens)} tokens (lengths {lens}), more than max_tokens={max_tokens}; "
                    "raise max_tokens or filter long pairs with ParallelDataset(max_len=...)"
                )
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.sort_by_length = sort_by_length
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose batch order the next iteration yields."""
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        """The current epoch's batches (lists of example indices), in the order they are yielded."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = random.Random(f"{self.seed}:{self.epoch}")  # str seeds hash deterministically (sha512)
        order = list(range(len(self._lengths)))
        if self.shuffle:
            rng.shuffle(order)
        if self.sort_by_length:
            order.sort(key=lambda i: self._lengths[i])  # stable: ties keep the shuffled order
        batches: list[list[int]] = []
        batch: list[int] = []
        widths = [0] * (len(self._lengths[0]) if self._lengths else 0)
        for i in order:
            grown = [max(w, n) for w, n in zip(widths, self._lengths[i])]
            if batch and (len(batch) + 1) * sum(grown) > self.max_tokens:
                batches.append(batch)
                batch, grown = [], list(self._lengths[i])
            batch.append(i)
            widths = grown
        if batch:
            batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


# ----------------------------------------------------------------------------- collation


def padded_lengths(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_multiple: int = 1, max_len: int | None = None
) -> tuple[int, int]:
    """``(S, T)`` of the batch :func:`collate_translation` makes of ``pairs``: the longest source and the longest
    target + 1, each rounded up to a multiple of ``pad_multiple`` but not above ``max_len``."""
    src = max(len(s) for s, _ in pairs)
    tgt = max(len(t) for _, t in pairs) + 1
    return bucket_length(src, pad_multiple, max_len), bucket_length(tgt, pad_multiple, max_len)


def collate_translation(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int = 0,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_multiple: int = 1,
    max_len: int | None = None,
    rows: int | None = None,
) -> dict[str, Tensor]:
    """Pads a list of ``(src_ids, tgt_ids)`` pairs into teacher-forcing tensors.

    Args:
        pairs: B pairs of id lists without special tokens.
        pad_id: padding id (model ``pad_id``).
        bos_id: id prepended to the decoder input.
        eos_id: id appended to the decoder target.
        pad_multiple: pad S and T up to a multiple of this (1: to the longest sequence exactly).
        max_len: the padded lengths never exceed this (nor fall below the longest sequence).
        rows: pad the batch to this many rows (static batch shapes) with filler rows that weigh nothing: a source
            of one ``eos``, a decoder input of one ``bos`` whose label is ``IGNORE_INDEX`` (so no attention row is
            empty, and the loss, its gradient and the token counts are those of the real rows). ``None``: B rows.

    Returns:
        ``src_ids`` (B, S) long; ``src_padding_mask`` (B, S) bool, True = real token;
        ``tgt_in`` (B, T) long, ``[bos] + tgt``; ``tgt_out`` (B, T) long, ``tgt + [eos]``
        (the next-token labels for ``tgt_in``); ``tgt_padding_mask`` (B, T) bool, True = real token;
        ``num_tgt_tokens``, an int: the real target tokens (for throughput, without a device sync).
        S is the longest source, T the longest target + 1, each rounded up by ``pad_multiple``; padding positions
        hold ``pad_id``.

    Raises:
        ValueError: ``pairs`` is empty, a sequence is empty, or ``rows`` is below the number of pairs.
    """
    if rows is not None and rows < len(pairs):
        raise ValueError(f"rows must be at least the number of pairs ({len(pairs)}), got {rows}")
    if len(pairs) == 0:
        raise ValueError("pairs must hold at least one (src_ids, tgt_ids) pair, got an empty batch")
    for i, (src, tgt) in enumerate(pairs):
        if len(src) == 0 or len(tgt) == 0:
            raise ValueError(f"pairs[{i}] has an empty {'source' if len(src) == 0 else 'target'}; got lengths "
                             f"({len(src)}, {len(tgt)})")
    src_lens = np.array([len(s) for s, _ in pairs])  # (B,)
    tgt_lens = np.array([len(t) + 1 for _, t in pairs])  # (B,) with bos/eos
    check_pad_multiple(pad_multiple)
    batch_size = len(pairs) if rows is None else rows
    src_len, tgt_len = padded_lengths(pairs, pad_multiple, max_len)
    # Filled in numpy (one slice assignment per row) and handed to torch once: collation stays off the profile.
    src_ids = np.full((batch_size, src_len), pad_id, dtype=np.int64)  # (B, S)
    tgt_in = np.full((batch_size, tgt_len), pad_id, dtype=np.int64)  # (B, T)
    tgt_out = np.full((batch_size, tgt_len), pad_id, dtype=np.int64)  # (B, T)
    for row, (src, tgt) in enumerate(pairs):
        m = len(tgt)
        src_ids[row, : len(src)] = src
        tgt_in[row, 0], tgt_in[row, 1 : m + 1] = bos_id, tgt
        tgt_out[row, :m], tgt_out[row, m] = tgt, eos_id
    fillers = batch_size - len(pairs)
    src_ids[len(pairs):, 0], tgt_in[len(pairs):, 0], tgt_out[len(pairs):, 0] = eos_id, bos_id, IGNORE_INDEX
    ones = np.ones(fillers, dtype=src_lens.dtype)
    src_padding_mask = np.arange(src_len) < np.concatenate([src_lens, ones])[:, None]  # (B, S)
    tgt_padding_mask = np.arange(tgt_len) < np.concatenate([tgt_lens, ones])[:, None]  # (B, T)
    src_ids, tgt_in, tgt_out = torch.from_numpy(src_ids), torch.from_numpy(tgt_in), torch.from_numpy(tgt_out)
    src_padding_mask, tgt_padding_mask = torch.from_numpy(src_padding_mask), torch.from_numpy(tgt_padding_mask)
    return {
        "src_ids": src_ids,
        "src_padding_mask": src_padding_mask,
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "tgt_padding_mask": tgt_padding_mask,
        "num_tgt_tokens": int(tgt_lens.sum()),  # the real target tokens, known on the host
    }


class TranslationLoader:
    """Iterable of collated batches over a :class:`ParallelDataset`, one pass per epoch (CPU, in-process).

    Args:
        dataset: the encoded pairs.
        max_tokens: padded-token budget per batch (source + target), see :class:`TokenBucketBatchSampler`.
        shuffle: shuffle batch order per epoch.
        seed: base seed; batches depend only on ``(seed, epoch)``.
        pad_id: padding id.
        bos_id: begin-of-sentence id.
        eos_id: end-of-sentence id.
        pad_multiple: pad batches to lengths that are multiples of this (bucketing: few shapes for compiled steps;
            the token budget counts the padded lengths). 1: to the longest sequence exactly.
        max_len: cap of the padded lengths (the dataset's ``max_len``).
        static_batches: also pad the rows of every batch to ``max_tokens // (S + T)`` (its padded lengths' budget)
            with filler rows that weigh nothing (see :func:`collate_translation`'s ``rows``): with
            ``pad_multiple`` the batches take a few shapes, each of which a CUDA graph can replay
            (:mod:`formers.training.step_graphs`; ``static_shapes`` tells the Trainer).

    Yields:
        Dicts from :func:`collate_translation`.
    """

    def __init__(
        self,
        dataset: ParallelDataset,
        max_tokens: int,
        shuffle: bool = True,
        seed: int = 0,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        pad_multiple: int = 1,
        max_len: int | None = None,
        static_batches: bool = False,
    ) -> None:
        check_pad_multiple(pad_multiple)
        self.dataset = dataset
        self.static_shapes = static_batches
        lengths = [tuple(bucket_length(n, pad_multiple, max_len) for n in pair) for pair in dataset.lengths]
        self.sampler = TokenBucketBatchSampler(lengths, max_tokens, shuffle=shuffle, seed=seed)
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.pad_multiple, self.max_len = pad_multiple, max_len

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose batch order the next iteration yields."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for indices in self.sampler:
            pairs = [self.dataset[i] for i in indices]
            rows = None
            if self.static_shapes:  # the rows the token budget allows at the batch's padded lengths
                rows = max(len(pairs), self.sampler.max_tokens // sum(padded_lengths(pairs, self.pad_multiple,
                                                                                     self.max_len)))
            yield collate_translation(pairs, self.pad_id, self.bos_id, self.eos_id, self.pad_multiple, self.max_len,
                                      rows)
