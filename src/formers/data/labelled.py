"""The user's labelled data: CSV / TSV / JSONL files with text (and optional text-pair) and label columns.

Two shapes are read:

- sequence classification (:func:`read_labelled`): one text (and optionally a second text) and one label per
  record, e.g. ``text,label`` rows of a CSV or ``{"text": ..., "label": ...}`` lines of a JSONL file;
- token classification (:func:`read_token_labelled`): one list of words and one list of tags of the same length
  per record; in JSONL both are lists, in CSV/TSV both are whitespace-separated strings
  (``"EU rejects German call"``, ``"B-ORG O B-MISC O"``).

The format follows the file suffix (``.csv``, ``.tsv``, ``.jsonl``/``.json`` with one object per line) unless
``file_format`` names it. Labels are read as strings, so ``1`` in a CSV and ``1`` in a JSONL file are one label.
A :class:`LabelVocab` maps label strings to class ids (sorted order, so it depends only on the label set) and is
saved as ``labels.json`` next to a fine-tuned checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from formers.data.buckets import bucket_length, check_pad_multiple
from formers.data.mlm import IGNORE_INDEX

FORMATS = ("csv", "tsv", "jsonl")
LABELS_FILE = "labels.json"


@dataclass
class LabelledTexts:
    """Sequence-classification records: ``texts[i]`` (and ``pairs[i]``) labelled ``labels[i]``."""
    texts: list[str]
    labels: list[str]
    pairs: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> LabelledTexts:
        """The records at ``indices``, in that order."""
        pairs = [self.pairs[i] for i in indices] if self.pairs is not None else None
        return LabelledTexts([self.texts[i] for i in indices], [self.labels[i] for i in indices], pairs)


@dataclass
class LabelledTokens:
    """Token-classification records: ``words[i][j]`` tagged ``tags[i][j]``."""
    words: list[list[str]]
    tags: list[list[str]]

    def __len__(self) -> int:
        return len(self.words)


def file_format_of(path: str | os.PathLike[str], file_format: str | None = None) -> str:
    """``file_format`` when given, else the format named by the suffix of ``path``."""
    if file_format is not None:
        if file_format not in FORMATS:
            raise ValueError(f"file_format must be one of {FORMATS}, got {file_format!r}")
        return file_format
    suffix = Path(path).suffix.lower().lstrip(".")
    found = {"csv": "csv", "tsv": "tsv", "tab": "tsv", "jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl"}.get(suffix)
    if found is None:
        raise ValueError(
            f"cannot tell the format of {os.fspath(path)!r} from its suffix; pass file_format, one of {FORMATS}"
        )
    return found


def iter_records(path: str | os.PathLike[str], file_format: str | None = None) -> Iterator[dict[str, Any]]:
    """The records of a CSV/TSV file (the first row names the columns) or a JSONL file (one object per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labelled data file {os.fspath(path)!r} does not exist")
    fmt = file_format_of(path, file_format)
    with open(path, encoding="utf-8", newline="") as handle:
        if fmt == "jsonl":
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path} line {number}: not JSON ({e})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
                yield record
        else:
            csv.field_size_limit(2**31 - 1)  # texts such as whole e-mails exceed the 128 KiB default
            reader = csv.DictReader(handle, delimiter="," if fmt == "csv" else "\t")
            yield from reader


def _field(record: dict[str, Any], column: str, path: Path, number: int) -> Any:
    if column not in record:
        raise KeyError(f"{path} record {number} has no column {column!r}; its columns are {sorted(record)}")
    value = record[column]
    if value is None:
        raise ValueError(f"{path} record {number}: column {column!r} is empty")
    return value


def read_labelled(
    path: str | os.PathLike[str],
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    file_format: str | None = None,
) -> LabelledTexts:
    """Reads sequence-classification records.

    Args:
        path: a ``.csv``, ``.tsv`` or ``.jsonl`` file.
        text_column: the column (key) holding the text.
        label_column: the column holding the label (any JSON scalar; read as a string).
        text_pair_column: optional column holding a second text (sentence-pair tasks).
        file_format: ``"csv"``, ``"tsv"`` or ``"jsonl"``; ``None`` follows the suffix.

    Raises:
        KeyError: a record lacks a named column (the message lists the columns it has).
        ValueError: an empty file, a non-string text or a malformed line.
    """
    path = Path(path)
    texts, labels, pairs = [], [], []
    for number, record in enumerate(iter_records(path, file_format), start=1):
        text = _field(record, text_column, path, number)
        if not isinstance(text, str):
            raise ValueError(
                f"{path} record {number}: column {text_column!r} must hold text, got {type(text).__name__}"
            )
        texts.append(text)
        labels.append(str(_field(record, label_column, path, number)))
        if text_pair_column is not None:
            pairs.append(str(_field(record, text_pair_column, path, number)))
    if not texts:
        raise ValueError(f"{path} holds no records")
    return LabelledTexts(texts, labels, pairs if text_pair_column is not None else None)


def _as_list(value: Any, column: str, path: Path, number: int) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [str(v) for v in value]
    raise ValueError(f"{path} record {number}: column {column!r} must be a list or a space-separated string")


def read_token_labelled(
    path: str | os.PathLike[str],
    words_column: str = "tokens",
    tags_column: str = "tags",
    file_format: str | None = None,
) -> LabelledTokens:
    """Reads token-classification records (one tag per word).

    Args:
        path: a ``.csv``, ``.tsv`` or ``.jsonl`` file.
        words_column: the column holding the words (a JSON list, or a whitespace-separated string).
        tags_column: the column holding one tag per word (same forms).
        file_format: ``"csv"``, ``"tsv"`` or ``"jsonl"``; ``None`` follows the suffix.

    Raises:
        KeyError: a record lacks a named column.
        ValueError: a record whose word and tag counts differ, an empty record or an empty file.
    """
    path = Path(path)
    words, tags = [], []
    for number, record in enumerate(iter_records(path, file_format), start=1):
        w = _as_list(_field(record, words_column, path, number), words_column, path, number)
        t = _as_list(_field(record, tags_column, path, number), tags_column, path, number)
        if len(w) != len(t) or not w:
            raise ValueError(f"{path} record {number}: {len(w)} words but {len(t)} tags (need as many, at least 1)")
        words.append(w)
        tags.append(t)
    if not words:
        raise ValueError(f"{path} holds no records")
    return LabelledTokens(words, tags)


class LabelVocab:
    """Label strings <-> class ids, in sorted order.

    Args:
        labels: the label names, id ``i`` being ``labels[i]``.
    """
    def __init__(self, labels: Sequence[str]) -> None:
        labels = [str(label) for label in labels]
        if not labels:
            raise ValueError("a label vocabulary needs at least one label, got none")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct, got {labels}")
        self.labels = labels
        self._ids = {label: i for i, label in enumerate(labels)}

    @classmethod
    def from_data(cls, labels: Iterable[str]) -> LabelVocab:
        """The sorted set of ``labels`` (flattened one level for token tags)."""
        return cls(sorted(set(labels)))

    def __len__(self) -> int:
        return len(self.labels)

    def id(self, label: str) -> int:
        """The class id of ``label``; raises a ``ValueError`` naming the known labels when unseen."""
        if label not in self._ids:
            raise ValueError(f"unknown label {label!r}; the label vocabulary holds {self.labels}")
        return self._ids[label]

    def encode(self, labels: Iterable[str]) -> list[int]:
        """Class ids of ``labels``."""
        return [self.id(label) for label in labels]

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Writes ``labels.json`` (``{"labels": [...]}``) into ``directory``; returns the file."""
        path = Path(directory) / LABELS_FILE
        path.write_text(json.dumps({"labels": self.labels}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LabelVocab:
        """Reads the ``labels.json`` of a checkpoint directory."""
        path = Path(directory) / LABELS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{os.fspath(directory)!r} holds no {LABELS_FILE} (the label vocabulary)")
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
            raise ValueError(f"{path} must hold {{'labels': [...]}}")
        return cls(data["labels"])


__all__ = [
    "FORMATS",
    "LABELS_FILE",
    "LabelVocab",
    "LabelledTexts",
    "LabelledTokens",
    "file_format_of",
    "iter_records",
    "read_labelled",
    "read_token_labelled",
]


# ----------------------------------------------------------------------------- encoding and batching


@dataclass(frozen=True)
class EncodedExample:
    """One row: ids and segment ids with ``[CLS]``/``[SEP]``, and its label (an int, or one per token)."""
    input_ids: list[int]
    token_type_ids: list[int]
    label: int | list[int]


def encode_texts(tokenizer, texts, pairs, labels: Sequence[int], max_len: int) -> list[EncodedExample]:
    """``[CLS] text [SEP] (pair [SEP])`` rows truncated to ``max_len`` (longest first), one label each."""
    out = []
    for i, text in enumerate(texts):
        enc = tokenizer.encode_plus(text, pairs[i] if pairs is not None else None, max_length=max_len, truncation=True)
        out.append(EncodedExample(enc.input_ids, enc.token_type_ids, int(labels[i])))
    return out


def encode_words(tokenizer, words: Sequence[str], tags: Sequence[int], max_len: int) -> EncodedExample:
    """``[CLS] pieces [SEP]`` with each word's tag on its first piece and -100 elsewhere (cut to ``max_len``)."""
    ids, labels = [tokenizer.cls_id], [IGNORE_INDEX]
    for word, tag in zip(words, tags, strict=True):
        pieces = tokenizer.encode(word, add_special_tokens=False, max_length=1 << 30) or [tokenizer.unk_id]
        if len(ids) + len(pieces) > max_len - 1:
            break  # words past the limit are dropped (and not scored)
        ids.extend(pieces)
        labels.extend([tag] + [IGNORE_INDEX] * (len(pieces) - 1))
    ids.append(tokenizer.sep_id)
    labels.append(IGNORE_INDEX)
    return EncodedExample(ids, [0] * len(ids), labels)


def collate(
    examples: Sequence[EncodedExample], pad_id: int, pad_multiple: int = 1, max_len: int | None = None
) -> dict[str, Tensor]:
    """Right-padded ``input_ids``, ``token_type_ids``, ``padding_mask`` (B, T) and ``labels`` ((B,) or (B, T)).

    T is the longest row rounded up to a multiple of ``pad_multiple`` (bucketing: few shapes for compiled steps),
    but not above ``max_len`` (nor below the longest row).
    """
    check_pad_multiple(pad_multiple)
    t = bucket_length(max(len(e.input_ids) for e in examples), pad_multiple, max_len)
    ids = np.full((len(examples), t), pad_id, dtype=np.int64)
    types = np.zeros((len(examples), t), dtype=np.int64)
    token_level = isinstance(examples[0].label, list)
    shape = (len(examples), t) if token_level else (len(examples),)
    labels = np.full(shape, IGNORE_INDEX if token_level else 0, dtype=np.int64)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = e.input_ids
        types[row, :n] = e.token_type_ids
        if token_level:
            labels[row, :n] = e.label
        else:
            labels[row] = e.label
    lengths = np.array([len(e.input_ids) for e in examples])
    return {
        "input_ids": torch.from_numpy(ids),
        "token_type_ids": torch.from_numpy(types),
        "padding_mask": torch.from_numpy(np.arange(t)[None, :] < lengths[:, None]),
        "labels": torch.from_numpy(labels),
    }


class ClassificationLoader:
    """Batches of encoded rows, shuffled per ``(seed, epoch)`` (or in order when ``shuffle`` is False), padded as
    :func:`collate` pads them (``pad_multiple``, ``max_len``)."""
    def __init__(
        self, examples: Sequence[EncodedExample], batch_size: int, pad_id: int, seed: int = 0, shuffle: bool = True,
        pad_multiple: int = 1, max_len: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not examples:
            raise ValueError("examples must hold at least one row, got none")
        self.examples, self.batch_size, self.pad_id = list(examples), batch_size, pad_id
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0
        self.pad_multiple, self.max_len = pad_multiple, max_len

    @property
    def static_shapes(self) -> bool:
        """Whether the batches come in a few shapes (lengths padded to multiples of ``pad_multiple`` > 1, and at most
        one smaller last batch): a Trainer may then replay each shape's step as a CUDA graph."""
        return self.pad_multiple > 1

    def set_epoch(self, epoch: int) -> None:
        """Fixes the order of the next iteration to that of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.examples) // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        order = np.arange(len(self.examples))
        if self.shuffle:
            order = np.random.default_rng([self.seed % 2**32, self.epoch]).permutation(len(self.examples))
        for start in range(0, len(order), self.batch_size):
            yield collate([self.examples[i] for i in order[start : start + self.batch_size]], self.pad_id,
                          self.pad_multiple, self.max_len)
