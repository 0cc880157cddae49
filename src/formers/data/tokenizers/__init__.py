"""Every formers tokenizer behind one :class:`Tokenizer` protocol, and :func:`load_tokenizer` for any directory.

- :mod:`.joint_bpe`: :class:`SubwordTokenizer`, the joint source+target BPE of the translation models.
- :mod:`.wordpiece`: :class:`WordPieceTokenizer`, BERT's WordPiece (its vocabularies: :mod:`.wordpiece_vocab`).
- :mod:`.gpt2_bpe`: :class:`GPT2BPETokenizer`, GPT-2's byte-level BPE (and :func:`.gpt2_bpe.train_byte_level_bpe`).
- :mod:`.char`: :class:`CharTokenizer`, one token per character (nanoGPT's ``shakespeare_char``).
- :mod:`.base`: the :class:`Tokenizer` protocol; :mod:`.load`: :func:`load_tokenizer`.
"""

from formers.data.tokenizers.base import Tokenizer
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.gpt2_bpe import GPT2BPETokenizer
from formers.data.tokenizers.joint_bpe import SubwordTokenizer
from formers.data.tokenizers.load import load_tokenizer
from formers.data.tokenizers.wordpiece import WordPieceTokenizer

__all__ = ["CharTokenizer", "GPT2BPETokenizer", "SubwordTokenizer", "Tokenizer", "WordPieceTokenizer", "load_tokenizer"]
