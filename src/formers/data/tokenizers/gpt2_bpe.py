"""GPT-2's byte-level BPE (Radford et al. 2019), read from OpenAI's ``encoder.json`` + ``vocab.bpe``.

Built on Hugging Face ``tokenizers`` (a ``ByteLevel`` pre-tokenizer with the GPT-2 split regex, no prefix
space, a ``BPE`` model from the two files, a ``ByteLevel`` decoder). Checked against
``transformers.GPT2Tokenizer`` and against a pure-Python transcription of OpenAI's ``encoder.py``:
identical ids on ASCII, accents, CJK, emoji, combining marks, whitespace runs, contractions, numbers and
the whole of tinyshakespeare (338,025 tokens).

Special token: ``<|endoftext|>`` (id 50256, :attr:`GPT2BPETokenizer.eot_id`, also its ``bos_id`` and ``eos_id`` as
in ``transformers``; ``pad_id`` and ``unk_id`` are None). Like the reference
``transformers.GPT2Tokenizer``, the literal string ``<|endoftext|>`` inside text IS encoded as that one
special id (``"a<|endoftext|>b" -> [64, 50256, 65]``), and :meth:`~GPT2BPETokenizer.decode` writes it back,
so ``decode(encode(text)) == text`` for every string. (OpenAI's ``tiktoken`` instead refuses such text by
default; strip the marker from untrusted text if it must not act as a document boundary.)

Decoding is lossless on whole sequences; only an id sequence that ends or starts inside a multi-byte UTF-8
character decodes its incomplete bytes to U+FFFD (``errors="replace"``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from formers.data.assets import unpack_asset
from formers.data.downloads import default_cache_dir, download, resolve_data_dir
from formers.layers.validation import check_decode_ids

EOT = "<|endoftext|>"
"""GPT-2's end-of-text / document separator token."""

ENCODER_JSON, VOCAB_BPE = "encoder.json", "vocab.bpe"
GPT2_DATA_NAME = "gpt2-bpe"
"""Folder name looked up under ``$FORMERS_DATA_DIR`` and ``shared/data``."""

GPT2_FILES: dict[str, tuple[str, str]] = {
    ENCODER_JSON: (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
    VOCAB_BPE: (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
}
"""Official URL and SHA-256 of each GPT-2 BPE file."""


class GPT2BPETokenizer:
    """Byte-level BPE tokenizer with GPT-2's interface: ``encode``, ``decode``, ``eot_id``.

    Build one with :meth:`from_files` (GPT-2's own vocabulary), :func:`train_byte_level_bpe` (a new one)
    or :meth:`load`.

    Args:
        tokenizer: a Hugging Face ``tokenizers.Tokenizer`` with a byte-level BPE model.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a tokenizers.Tokenizer, got {type(tokenizer).__name__}")
        self._tok = tokenizer

    @classmethod
    def from_files(cls, encoder_json: str | os.PathLike[str], vocab_bpe: str | os.PathLike[str]) -> GPT2BPETokenizer:
        """Reads GPT-2's vocabulary (``encoder.json``, 50,257 tokens) and merges (``vocab.bpe``).

        Raises:
            FileNotFoundError: either file is missing.
        """
        for name, path in (("encoder_json", encoder_json), ("vocab_bpe", vocab_bpe)):
            if not Path(path).is_file():
                raise FileNotFoundError(f"{name} file {os.fspath(path)!r} does not exist")
        tok = Tokenizer(models.BPE.from_file(os.fspath(encoder_json), os.fspath(vocab_bpe)))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        if tok.token_to_id(EOT) is not None:
            tok.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
        return cls(tok)

    @classmethod
    def from_gpt2_dir(cls, gpt2_dir: str | os.PathLike[str] | None = None, allow_download: bool = True) -> GPT2BPETokenizer:
        """GPT-2's tokenizer from the files found by :func:`find_gpt2_files`."""
        return cls.from_files(*find_gpt2_files(gpt2_dir, allow_download))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GPT2BPETokenizer:
        """Reads a ``tokenizer.json`` written by :meth:`save`."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"tokenizer file {os.fspath(path)!r} does not exist")
        return cls(Tokenizer.from_file(os.fspath(path)))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the whole tokenizer (vocabulary, merges, special tokens) as one ``tokenizer.json``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tok.save(os.fspath(path))
        return path

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, shape ``(L,)``; ``<|endoftext|>`` in the text becomes :attr:`eot_id`."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` of each text (in parallel threads), one list of ids per text."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, got a single str (use encode)")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def encode_long(self, text: str, chunk_chars: int = 1 << 20, chunks_per_batch: int = 32) -> np.ndarray:
        """Ids of a large text (a whole corpus), shape ``(L,)`` ``int64``: equal to ``encode(text)``, faster, less memory.

        The text is cut into chunks of about ``chunk_chars`` characters, only just after a ``"\\n"`` that has a
        non-space character on each side: there the GPT-2 split regex always ends a piece (the newline is a
        piece of its own), so no piece or special token straddles a cut and the ids are exactly those of
        the whole string. Chunks are encoded in parallel, ``chunks_per_batch`` at a time.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if isinstance(chunk_chars, bool) or not isinstance(chunk_chars, int) or chunk_chars < 1:
            raise ValueError(f"chunk_chars must be an int >= 1, got {chunk_chars!r}")
        chunks, start = [], 0
        while start < len(text):
            cut = text.find("\n", start + chunk_chars - 1)
            while cut != -1 and not _safe_cut(text, cut):
                cut = text.find("\n", cut + 1)
            end = len(text) if cut == -1 else cut + 1
            chunks.append(text[start:end])
            start = end
        parts = [np.zeros(0, dtype=np.int64)]
        for i in range(0, len(chunks), chunks_per_batch):
            encodings = self._tok.encode_batch(chunks[i : i + chunks_per_batch], add_special_tokens=False)
            parts.extend(np.asarray(e.ids, dtype=np.int64) for e in encodings)
        return np.concatenate(parts)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` (special tokens included); incomplete UTF-8 byte sequences become U+FFFD.

        Raises:
            TypeError: an id is no int (``1.5``, ``True``).
            ValueError: an id is outside ``[0, vocab_size)``.
        """
        return self._tok.decode(check_decode_ids(ids, self.vocab_size), skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        """Id of a vocabulary entry (in byte-level form, e.g. ``"Ġthe"``), or None."""
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """Vocabulary entry of ``token_id`` (byte-level form), or None."""
        return self._tok.id_to_token(token_id)

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (50,257 for GPT-2)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def eot_id(self) -> int:
        """Id of ``<|endoftext|>`` (50256 for GPT-2).

        Raises:
            ValueError: the vocabulary has no ``<|endoftext|>``.
        """
        i = self._tok.token_to_id(EOT)
        if i is None:
            raise ValueError(f"this tokenizer has no {EOT} token")
        return i

    @property
    def bos_id(self) -> int | None:
        """Id of ``<|endoftext|>``, which starts GPT-2's documents as it ends them (None without one)."""
        return self._tok.token_to_id(EOT)

    @property
    def eos_id(self) -> int | None:
        """Id of ``<|endoftext|>`` (None without one): :attr:`eot_id` without the error."""
        return self._tok.token_to_id(EOT)

    @property
    def pad_id(self) -> None:
        """None: GPT-2 has no padding token."""
        return None

    @property
    def unk_id(self) -> None:
        """None: every byte is in the vocabulary, so no text needs an unknown token."""
        return None

    @property
    def backend(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tok

    def __repr__(self) -> str:
        return f"GPT2BPETokenizer(vocab_size={self.vocab_size})"


def _safe_cut(text: str, newline: int) -> bool:
    """Whether the regex split of ``text`` always ends a piece just after the ``"\\n"`` at ``newline``."""
    return 0 < newline < len(text) - 1 and not text[newline - 1].isspace() and not text[newline + 1].isspace()


def train_byte_level_bpe(
    texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (EOT,), min_frequency: int = 2
) -> GPT2BPETokenizer:
    """Trains a new byte-level BPE (GPT-2's pre-tokenization and decoder) on ``texts``.

    The 256 byte symbols are always in the vocabulary, so every text encodes and round-trips exactly.
    Special tokens take the first ids, in the order given, and are recognised in text like GPT-2's.

    Args:
        texts: training documents, one string each.
        vocab_size: target vocabulary size including the special tokens and the 256 bytes; the result may
            be smaller when the corpus offers fewer merges.
        special_tokens: tokens never split, e.g. ``("<|endoftext|>",)``.
        min_frequency: a pair must occur this often to be merged.

    Returns:
        The trained tokenizer.

    Raises:
        ValueError: ``vocab_size`` cannot hold the special tokens plus the 256 bytes.
    """
    special_tokens = list(special_tokens)
    minimum = 256 + len(special_tokens)
    if not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(
            f"vocab_size must be an int >= {minimum} (256 bytes + {len(special_tokens)} special tokens), got {vocab_size!r}"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return GPT2BPETokenizer(tok)


def find_gpt2_files(gpt2_dir: str | os.PathLike[str] | None = None, allow_download: bool = True) -> tuple[Path, Path]:
    """Locates GPT-2's ``encoder.json`` and ``vocab.bpe``.

    Looks at ``gpt2_dir`` (which then must hold both), else ``$FORMERS_DATA_DIR/gpt2-bpe``, else a sibling
    ``shared/data/gpt2-bpe`` (see :func:`formers.data.downloads.resolve_data_dir`), else unpacks the copies shipped
    in the package (:mod:`formers.data.assets`), else downloads the official files; both go into the cache
    (``$FORMERS_DATA_DIR`` or ``~/.cache/formers``) with their SHA-256 checked.

    Returns:
        Paths ``(encoder_json, vocab_bpe)``.

    Raises:
        FileNotFoundError: ``gpt2_dir`` lacks a file, or nothing was found and the download failed or was
            not allowed; the message says where to put the files.
    """
    required = list(GPT2_FILES)
    folder = resolve_data_dir(GPT2_DATA_NAME, required, gpt2_dir)
    if folder is None and all(unpack_asset(f"{GPT2_DATA_NAME}/{name}") for name in required):  # shipped with formers
        folder = default_cache_dir() / GPT2_DATA_NAME
    if folder is None:
        dest = default_cache_dir() / GPT2_DATA_NAME
        hint = (
            f"put {ENCODER_JSON} and {VOCAB_BPE} (from {GPT2_FILES[ENCODER_JSON][0].rsplit('/', 1)[0]}/) in a folder "
            f"and pass it (--gpt2-dir / gpt2_files_dir), or set $FORMERS_DATA_DIR to a folder holding {GPT2_DATA_NAME}/"
        )
        if not allow_download:
            raise FileNotFoundError(f"GPT-2 BPE files not found; {hint}")
        try:
            for name, (url, sha256) in GPT2_FILES.items():
                download(url, dest / name, sha256)
        except ConnectionError as exc:
            raise FileNotFoundError(f"GPT-2 BPE files not found locally and the download failed ({exc}); {hint}") from exc
        folder = dest
    return folder / ENCODER_JSON, folder / VOCAB_BPE
