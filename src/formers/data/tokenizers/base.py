"""The one contract every formers tokenizer meets: text <-> ids, the vocabulary size and the special ids.

Consumers that only turn text into ids and back (generation, translation, corpus preparation) take a
:class:`Tokenizer`; :func:`formers.data.tokenizers.load_tokenizer` gives the one a directory holds. Anything a
single algorithm adds (BERT's token types and padded batches, GPT-2's ``encode_long``, joint BPE training) stays
on its class.

Special ids are ``None`` where a tokenizer has no such token:

    tokenizer            pad_id        bos_id              eos_id              unk_id
    SubwordTokenizer     0 <pad>       1 <s>               2 </s>              3 <unk>
    WordPieceTokenizer   [PAD]         None ([CLS])        None ([SEP])        [UNK]
    GPT2BPETokenizer     None          <|endoftext|>       <|endoftext|>       None
    CharTokenizer        None          None                None                None

BERT's ``[CLS]``/``[SEP]`` frame text for its encoder rather than begin or end a generated sequence, so they
are ``cls_id``/``sep_id`` there and ``bos_id``/``eos_id`` are None, as in ``transformers``. GPT-2's one special
token both starts and ends documents (``transformers`` names it ``bos``, ``eos`` and ``unk``; it is never
produced for unknown text, since every byte is in the vocabulary, so ``unk_id`` is None here).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
    """Text to token ids and back, with the vocabulary size and the special ids (None where absent).

    ``isinstance(obj, Tokenizer)`` checks that the members exist, not their signatures.
    """

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included: ids are ``0 .. vocab_size - 1``."""
        ...

    @property
    def pad_id(self) -> int | None:
        """Id that pads rows of a batch, or None."""
        ...

    @property
    def bos_id(self) -> int | None:
        """Id that begins a sequence, or None."""
        ...

    @property
    def eos_id(self) -> int | None:
        """Id that ends a sequence (generation stops there), or None."""
        ...

    @property
    def unk_id(self) -> int | None:
        """Id that stands for text outside the vocabulary, or None."""
        ...

    def encode(self, text: str) -> list[int]:
        """The ids a model of this tokenizer reads for ``text``, shape ``(L,)``.

        No special token is added, except by WordPiece, which frames the text as ``[CLS] text [SEP]`` as
        ``transformers``' BERT ``encode`` does.
        """
        ...

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (shape ``(L,)``).

        Padding, begin and end tokens are dropped by the joint BPE and WordPiece; GPT-2 writes
        ``<|endoftext|>`` back as text. ``decode(encode(text)) == text`` for the character tokenizer (text of its
        characters), GPT-2 (any text) and the joint BPE (text of characters seen in training, less a leading space);
        WordPiece gives the text as BERT normalised it (lower-cased and accents stripped when uncased, spaces
        around punctuation removed).
        """
        ...
