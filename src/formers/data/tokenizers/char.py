"""Character-level tokenizer: every distinct character of a corpus is one token (nanoGPT's ``shakespeare_char``).

Ids are the ranks of the characters in sorted (code point) order, so the same corpus always gives the same
vocabulary; tinyshakespeare has 65 characters. There is no special token (no unknown, padding, begin or end
token: their ids are None): encoding a character outside the vocabulary raises, and ``decode(encode(text)) == text``
for every text that encodes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from formers.layers.validation import check_decode_ids

KIND = "char"
"""Value of the ``"kind"`` key in a saved character tokenizer's JSON."""


class CharTokenizer:
    """Maps each character of a fixed alphabet to its id and back.

    Args:
        chars: the vocabulary in id order: distinct single characters.

    Raises:
        ValueError: ``chars`` is empty, holds a string that is not one character, or repeats a character.
    """

    def __init__(self, chars: Iterable[str]) -> None:
        chars = list(chars)
        if not chars:
            raise ValueError("chars must hold at least one character, got an empty vocabulary")
        for i, c in enumerate(chars):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"chars[{i}] must be a single character, got {c!r}")
        self._itos: list[str] = chars
        self._stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}
        if len(self._stoi) != len(chars):
            dupes = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"chars must be distinct, got repeated characters {dupes!r}")

    @classmethod
    def from_corpus(cls, text: str) -> CharTokenizer:
        """Builds the vocabulary from the sorted distinct characters of ``text``.

        Raises:
            ValueError: ``text`` is empty.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("text must be non-empty to build a character vocabulary, got an empty string")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters."""
        return len(self._itos)

    @property
    def pad_id(self) -> None:
        """None: a character vocabulary has no special tokens (nor :attr:`bos_id`, :attr:`eos_id`, :attr:`unk_id`)."""
        return None

    bos_id = eos_id = unk_id = pad_id

    @property
    def chars(self) -> list[str]:
        """The vocabulary in id order (a copy)."""
        return list(self._itos)

    def encode(self, text: str) -> list[int]:
        """Returns the id of each character of ``text``, shape ``(len(text),)``.

        Raises:
            ValueError: a character is outside the vocabulary; the character and its position are named.
        """
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """Like :meth:`encode` but returns an ``int64`` numpy array of shape ``(len(text),)`` (for large corpora)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        stoi = self._stoi
        try:
            return np.fromiter((stoi[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError:
            pos, char = next((i, c) for i, c in enumerate(text) if c not in stoi)
            raise ValueError(
                f"character {char!r} (U+{ord(char):04X}) at position {pos} is not in the vocabulary "
                f"of {self.vocab_size} characters"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Returns the text of ``ids``.

        Raises:
            TypeError: an id is no int (``1.5``, ``True``).
            ValueError: an id is outside ``[0, vocab_size)``.
        """
        return "".join(self._itos[i] for i in check_decode_ids(ids, len(self._itos)))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the vocabulary as JSON ``{"kind": "char", "chars": [...]}`` and returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": KIND, "chars": self._itos}, ensure_ascii=True), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharTokenizer:
        """Reads a tokenizer written by :meth:`save`.

        Raises:
            ValueError: the file is not a saved character tokenizer.
        """
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("chars"), list):
            raise ValueError(f"{os.fspath(path)} is not a character tokenizer file (expected JSON with kind={KIND!r})")
        return cls(data["chars"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and self._itos == other._itos

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
