"""Joint BPE for translation (:class:`SubwordTokenizer`): one source+target BPE built on Hugging Face ``tokenizers``.

No normaliser is applied (no NFKC, no lower-casing): text is split on the ASCII space with the
Metaspace pre-tokenizer (each space becomes the visible ``▁`` prefix of the following piece) and
rebuilt by the matching Metaspace decoder, so ``decode(encode(text)) == text`` exactly, non-breaking
spaces and repeated spaces included (only a leading space is dropped), for any text whose characters all occurred in training. The
BPE has no byte fallback: a character never seen in training maps to ``<unk>`` and is lost on decode.

Special ids are fixed to match the model defaults: ``<pad>=0, <s>=1, </s>=2, <unk>=3``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from formers.layers.validation import check_decode_ids

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
"""Special tokens in id order: pad=0, bos=1, eos=2, unk=3."""

TOKENIZER_FILE = "tokenizer.json"


class SubwordTokenizer:
    """Joint BPE tokenizer with fixed special ids and exact detokenisation.

    Build one with :meth:`train` or :meth:`load`; the constructor wraps an existing
    ``tokenizers.Tokenizer`` whose first four ids are ``<pad>, <s>, </s>, <unk>``.

    Args:
        tokenizer: a Hugging Face ``tokenizers.Tokenizer``.

    Raises:
        ValueError: the special tokens are missing or have other ids.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a tokenizers.Tokenizer, got {type(tokenizer).__name__}")
        for expected_id, token in enumerate(SPECIAL_TOKENS):
            actual = tokenizer.token_to_id(token)
            if actual != expected_id:
                raise ValueError(f"special token {token!r} must have id {expected_id}, got {actual}")
        self._tok = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> SubwordTokenizer:
        """Trains a BPE on ``texts`` (pass source and target sentences together for a joint vocabulary).

        Args:
            texts: training sentences, one string each.
            vocab_size: target vocabulary size including the 4 special tokens; the result may be
                smaller when the corpus has fewer merges to offer.
            min_frequency: a pair must occur this often to be merged.

        Returns:
            The trained tokenizer.

        Raises:
            ValueError: ``vocab_size`` is too small, or ``texts`` holds no non-blank sentence.
        """
        min_vocab = len(SPECIAL_TOKENS) + 1
        if not isinstance(vocab_size, int) or vocab_size < min_vocab:
            raise ValueError(f"vocab_size must be an int >= {min_vocab} (4 special tokens + 1), got {vocab_size!r}")
        if not isinstance(min_frequency, int) or min_frequency < 1:
            raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}")
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of sentences, got a single str")
        corpus = [t for t in texts if t.strip()]
        if not corpus:
            raise ValueError("cannot train a tokenizer on an empty corpus: texts holds no non-blank sentence")

        tok = Tokenizer(models.BPE(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
        )
        tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
        return cls(tok)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SubwordTokenizer:
        """Loads a tokenizer saved by :meth:`save`.

        Args:
            path: a ``tokenizer.json`` file, or a folder holding one.

        Raises:
            FileNotFoundError: no such file.
        """
        file = Path(path)
        if file.is_dir():
            file = file / TOKENIZER_FILE
        if not file.is_file():
            raise FileNotFoundError(f"no tokenizer file at {os.fspath(file)!r} (expected a {TOKENIZER_FILE} from save())")
        return cls(Tokenizer.from_file(os.fspath(file)))

    from_file = load

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the tokenizer as JSON.

        Args:
            path: a file path, or an existing folder (the file is then ``<folder>/tokenizer.json``).

        Returns:
            The written file's path.
        """
        file = Path(path)
        if file.is_dir():
            file = file / TOKENIZER_FILE
        file.parent.mkdir(parents=True, exist_ok=True)
        self._tok.save(os.fspath(file))
        return file

    def encode(self, text: str) -> list[int]:
        """Encodes one sentence to subword ids, without special tokens.

        Args:
            text: the sentence.

        Returns:
            Token ids, length L (0 for an empty string).
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encodes many sentences at once (parallel in Rust); same result as ``[encode(t) for t in texts]``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, got a single str; use encode() for one sentence")
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Turns ids back into text, dropping every special id (pad, bos, eos and unk).

        Args:
            ids: token ids, e.g. a generated row.

        Returns:
            The detokenized sentence.
        """
        return self._tok.decode(check_decode_ids(ids, self.vocab_size), skip_special_tokens=True)

    def decode_batch(self, rows: Iterable[Iterable[int]]) -> list[str]:
        """Decodes each row of ids with :meth:`decode`."""
        return [self.decode(r) for r in rows]

    def token_to_id(self, token: str) -> int | None:
        """Returns the id of a vocabulary token, or None."""
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """Returns the vocabulary token of an id, or None."""
        return self._tok.id_to_token(token_id)

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (the model's ``vocab_size``)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>`` (0)."""
        return 0

    @property
    def bos_id(self) -> int:
        """Id of ``<s>`` (1)."""
        return 1

    @property
    def eos_id(self) -> int:
        """Id of ``</s>`` (2)."""
        return 2

    @property
    def unk_id(self) -> int:
        """Id of ``<unk>`` (3)."""
        return 3

    @property
    def backend(self) -> Tokenizer:
        """The wrapped Hugging Face tokenizer."""
        return self._tok

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SubwordTokenizer) and self._tok.to_str() == other._tok.to_str()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SubwordTokenizer(vocab_size={self.vocab_size})"
