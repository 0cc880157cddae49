"""BERT's WordPiece tokenizer (Devlin et al. 2019; Wu et al. 2016), read from a ``vocab.txt`` or trained anew.

Built on Hugging Face ``tokenizers`` with the pipeline of ``transformers``' ``BertTokenizer`` (which in
``transformers`` 5 *is* ``BertTokenizerFast``): a ``BertNormalizer`` (control characters dropped, whitespace to
spaces, spaces around CJK ideographs, optional lower-casing and accent stripping), the ``BertPreTokenizer``
(split on whitespace and on every punctuation character) and a greedy longest-match-first ``WordPiece`` model
(``##`` continuation prefix; a word longer than 100 characters or with no segmentation becomes ``[UNK]``).
Special tokens written literally in text (``"[MASK]"``) are recognised as such, as in the reference.

Special tokens, token types, truncation and padding are assembled here: ``[CLS] A [SEP]`` (types 0) and
``[CLS] A [SEP] B [SEP]`` (types 0 ... 0 1 ... 1). Truncation of a pair is ``longest_first`` as the fast
tokenizer does it: only the longer side is cut while that suffices, else both are cut to half the budget
(the shorter side getting the floor). An empty ``pair`` is an empty second segment (``[CLS] A [SEP] [SEP]``), as
in ``tokenizers`` and in batched ``transformers`` calls (a single ``transformers`` call drops an empty pair).
As in ``transformers``, :meth:`~WordPieceTokenizer.encode` gives the ids (the
:class:`~formers.data.tokenizers.base.Tokenizer` protocol), :meth:`~WordPieceTokenizer.encode_plus` the ids with
token types, and ``__call__`` padded batch tensors.
Vocabularies are read from BERT's files or learnt from text by :mod:`formers.data.tokenizers.wordpiece_vocab`.

Checked (tests/data/tokenizers/test_wordpiece.py) against ``transformers.BertTokenizer`` (= ``BertTokenizerFast`` in
``transformers`` 5): identical ids, token types, truncation, padding and decoded text on cased and uncased
vocabularies and the real all-MiniLM-L6-v2 one, over accents, CJK, emoji, control characters, whitespace runs,
empty strings, long words, punctuation and random strings from 20 Unicode blocks (0 differences in 6,000 such
strings while developing). Against the pure-Python ``BertTokenizerLegacy`` (the former slow ``BertTokenizer``)
the ids are identical on text of long-assigned characters; it differs from both fast ones in four ways, which
the tests pin down:

- it NFC-composes text before splitting, so a decomposed ``e`` + U+0301 under a *cased* vocabulary is one
  character there and two here (uncased vocabularies strip the accent either way);
- its character classes come from Python's ``unicodedata`` (Unicode 14 on Python 3.11), the fast tokenizer's
  from older Rust tables: code points unassigned in Unicode 14 are dropped there (as control characters) but
  kept here (inside an ``[UNK]`` word), and about 760 characters classed differently by the two tables (mostly
  punctuation and marks added in Unicode 12-14, e.g. U+061D, U+2E55) split or vanish there and not here;
- it lower-cases with Python's ``str.lower``, which writes a word-final capital sigma as ``ς``; the fast
  tokenizer maps each character alone (``σ``);
- when both sides of a pair must be cut to an odd budget, ``longest_first`` gives the extra token to the first
  sequence there and to the longer (at equal lengths, the second) here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
)
from torch import Tensor

from formers.data.tokenizers.wordpiece_vocab import (
    CONFIG_NAME,
    DEFAULT_SPECIALS,
    MAX_CHARS_PER_WORD,
    SPECIAL_ROLES,
    TOKENIZER_JSON,
    VOCAB_NAME,
    config_options,
    learn_vocab,
    read_tokenizer_json_vocab,
    read_vocab_file,
    tokenizer_json_options,
)
from formers.files import atomic_file, read_json


@dataclass
class Encoding:
    """One encoded sequence (or pair): ``input_ids`` and ``token_type_ids`` of equal length."""

    input_ids: list[int]
    token_type_ids: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


def _write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file, fsync and ``os.replace``."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def _check_flag(value: Any, name: str, allow_none: bool = False) -> None:
    if isinstance(value, bool) or (allow_none and value is None):
        return
    expected = "a bool or None" if allow_none else "a bool"
    raise TypeError(f"{name} must be {expected}, got {value!r}")


class WordPieceTokenizer:
    """BERT's WordPiece tokenizer: text -> ``[CLS] ... [SEP]`` ids with token types, padding and truncation.

    Build one with :meth:`from_vocab_file`, :meth:`from_directory` or :meth:`train`.

    Args:
        tokens: the vocabulary, id ``i`` being ``tokens[i]``; must hold the five special tokens.
        lowercase: lower-case text before splitting (uncased vocabularies).
        strip_accents: remove combining marks after NFD decomposition; ``None`` follows ``lowercase``.
        tokenize_chinese_chars: put spaces around every CJK ideograph, making each a word.
        max_len: longest encoded sequence (special tokens included) accepted without ``max_length``.
        special_tokens: role -> token text for ``pad``, ``unk``, ``cls``, ``sep`` and ``mask``
            (default ``[PAD]``, ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``).
        source: file the vocabulary came from, named in error messages.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        max_len: int = 512,
        special_tokens: dict[str, str] | None = None,
        source: str | Path | None = None,
    ) -> None:
        _check_flag(lowercase, "lowercase")
        _check_flag(strip_accents, "strip_accents", allow_none=True)
        _check_flag(tokenize_chinese_chars, "tokenize_chinese_chars")
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 2:
            raise ValueError(f"max_len must be an int >= 2 (room for [CLS] and [SEP]), got {max_len!r}")
        specials = dict(DEFAULT_SPECIALS, **(special_tokens or {}))
        unknown_roles = sorted(set(specials) - set(SPECIAL_ROLES))
        if unknown_roles:
            raise ValueError(f"special_tokens roles must be among {SPECIAL_ROLES}, got {unknown_roles}")
        self.source = str(source) if source is not None else "<in-memory vocabulary>"
        self._tokens = list(tokens)
        self._vocab = {t: i for i, t in enumerate(self._tokens)}
        if len(self._vocab) != len(self._tokens):
            raise ValueError(f"the vocabulary of {self.source} lists a token twice")
        missing = [t for t in specials.values() if t not in self._vocab]
        if missing:
            raise ValueError(f"the vocabulary of {self.source} lacks the special token(s) {missing}")
        self.lowercase, self.strip_accents = lowercase, strip_accents
        self.tokenize_chinese_chars, self.max_len = tokenize_chinese_chars, max_len
        self.special_tokens = specials
        self._special_ids = {self._vocab[t] for t in specials.values()}

        tk = Tokenizer(
            models.WordPiece(
                self._vocab, unk_token=specials["unk"], max_input_chars_per_word=MAX_CHARS_PER_WORD
            )
        )
        tk.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents,
            lowercase=lowercase,
        )
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        # Special tokens written in text stay whole and are not lower-cased, as in the reference.
        tk.add_special_tokens(
            [AddedToken(specials[r], special=True, normalized=False) for r in SPECIAL_ROLES]
        )
        self._tk = tk
        self._decoder = decoders.WordPiece(prefix="##", cleanup=True)

    # ----------------------------------------------------------------------------------------- construction
    @classmethod
    def from_vocab_file(
        cls,
        path: str | Path,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        max_len: int = 512,
    ) -> WordPieceTokenizer:
        """Reads a BERT ``vocab.txt`` (one token per line; see :func:`read_vocab_file`)."""
        return cls(
            read_vocab_file(path), lowercase, strip_accents, tokenize_chinese_chars, max_len, source=Path(path)
        )

    @classmethod
    def from_directory(cls, directory: str | Path) -> WordPieceTokenizer:
        """Reads a BERT directory: ``vocab.txt`` (else a WordPiece ``tokenizer.json``) and its options.

        Options come from ``tokenizer_config.json`` (Hugging Face or formers) if present, else from the
        ``BertNormalizer`` of a ``tokenizer.json``, else BERT's uncased defaults. ``model_max_length`` becomes
        ``max_len`` (512 when absent).

        Raises:
            FileNotFoundError: ``directory`` holds neither ``vocab.txt`` nor ``tokenizer.json``.
            ValueError: a corrupt configuration file, or options that are not BERT's.
        """
        directory = Path(directory)
        vocab, config, tok_json = directory / VOCAB_NAME, directory / CONFIG_NAME, directory / TOKENIZER_JSON
        if vocab.is_file():
            tokens, source = read_vocab_file(vocab), vocab
        elif tok_json.is_file():
            tokens, source = read_tokenizer_json_vocab(read_json(tok_json), tok_json), tok_json
        else:
            raise FileNotFoundError(
                f"{directory} holds no {VOCAB_NAME} (a BERT WordPiece vocabulary) and no {TOKENIZER_JSON}"
            )
        options: dict[str, Any] = {}
        if config.is_file():
            options = config_options(read_json(config))
        elif tok_json.is_file():
            options = tokenizer_json_options(read_json(tok_json), tok_json)
        return cls(tokens, source=source, **options)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        lowercase: bool = True,
        min_frequency: int = 2,
        limit_alphabet: int = 1000,
    ) -> WordPieceTokenizer:
        """Trains a new WordPiece vocabulary on ``texts``, reproducibly (see :func:`.wordpiece_vocab.learn_vocab`).

        Args:
            texts: training documents, one string each.
            vocab_size: target size including the 5 special tokens (ids 0-4); the result is smaller when the
                corpus offers fewer pieces.
            lowercase: an uncased vocabulary (lower-cased, accents stripped).
            min_frequency: a pair must occur this often to be merged.
            limit_alphabet: most distinct characters kept.

        Returns:
            The trained tokenizer (``max_len`` 512).
        """
        return cls(learn_vocab(texts, vocab_size, lowercase, min_frequency, limit_alphabet), lowercase=lowercase)

    def save(self, directory: str | Path) -> Path:
        """Writes ``vocab.txt`` and ``tokenizer_config.json`` into ``directory`` (created if needed).

        Each file is replaced atomically and other files are left alone, so a model directory can hold the
        tokenizer. ``transformers.BertTokenizer.from_pretrained(directory)`` reads the result.

        Returns:
            ``directory``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(directory / VOCAB_NAME, "".join(t + "\n" for t in self._tokens))
        _write_atomic(directory / CONFIG_NAME, json.dumps(self.config(), indent=2, ensure_ascii=False) + "\n")
        return directory

    def config(self) -> dict[str, Any]:
        """The ``tokenizer_config.json`` content (Hugging Face's keys, plus the vocabulary fingerprint)."""
        return {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lowercase,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "model_max_length": self.max_len,
            **{f"{role}_token": self.special_tokens[role] for role in SPECIAL_ROLES},
            "vocab_size": self.vocab_size,
            "vocab_sha256": self.fingerprint,
        }

    # --------------------------------------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of tokens (ids are ``0 .. vocab_size - 1``)."""
        return len(self._tokens)

    @property
    def pad_id(self) -> int:
        return self._vocab[self.special_tokens["pad"]]

    @property
    def unk_id(self) -> int:
        return self._vocab[self.special_tokens["unk"]]

    @property
    def bos_id(self) -> None:
        """None: BERT frames text with ``[CLS]`` and ``[SEP]`` (:attr:`cls_id`, :attr:`sep_id`), as ``transformers``."""
        return None

    @property
    def eos_id(self) -> None:
        """None, as :attr:`bos_id`."""
        return None

    @property
    def cls_id(self) -> int:
        return self._vocab[self.special_tokens["cls"]]

    @property
    def sep_id(self) -> int:
        return self._vocab[self.special_tokens["sep"]]

    @property
    def mask_id(self) -> int:
        return self._vocab[self.special_tokens["mask"]]

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of the five special tokens (excluded from masking and from decoded text)."""
        return frozenset(self._special_ids)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the vocabulary (tokens joined by newlines): tells two vocabularies of one size apart."""
        return hashlib.sha256("\n".join(self._tokens).encode("utf-8")).hexdigest()

    def get_vocab(self) -> dict[str, int]:
        """A copy of the token -> id mapping."""
        return dict(self._vocab)

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or ``None`` when it is not in the vocabulary."""
        return self._vocab.get(token)

    def id_to_token(self, i: int) -> str:
        """The token of id ``i``.

        Raises:
            ValueError: ``i`` is outside ``[0, vocab_size)``.
        """
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self._tokens):
            raise ValueError(f"token id must be an int in [0, {len(self._tokens)}), got {i!r}")
        return self._tokens[i]

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return (
            f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
            f"strip_accents={self.strip_accents}, source={self.source!r})"
        )

    # ----------------------------------------------------------------------------------------------- encoding
    def tokenize(self, text: str) -> list[str]:
        """The word pieces of ``text``, without special tokens (``"unaffable" -> ["un", "##aff", "##able"]``)."""
        _check_text(text, "text")
        return self._tk.encode(text, add_special_tokens=False).tokens

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if len(texts) == 1:
            return [self._tk.encode(texts[0], add_special_tokens=False).ids]
        return [e.ids for e in self._tk.encode_batch(texts, add_special_tokens=False)]

    def encode(
        self,
        text: str,
        pair: str | None = None,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        truncation: bool = False,
    ) -> list[int]:
        """The ids of one text, or a pair, as BERT reads it: :meth:`encode_plus`'s ``input_ids`` (shape ``(L,)``).

        Like ``transformers``' ``encode``: ``[CLS] text [SEP]`` unless ``add_special_tokens`` is False.
        """
        return self.encode_plus(text, pair, add_special_tokens, max_length, truncation).input_ids

    def encode_plus(
        self,
        text: str,
        pair: str | None = None,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        truncation: bool = False,
    ) -> Encoding:
        """Encodes one text, or a pair, as BERT reads it, token types included.

        Args:
            text: first sequence.
            pair: optional second sequence (token type 1).
            add_special_tokens: frame as ``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]``.
            max_length: longest result (special tokens included); ``None`` means ``max_len``.
            truncation: cut a too-long result to ``max_length`` (``longest_first`` for pairs) instead of raising.

        Returns:
            An :class:`Encoding`.

        Raises:
            ValueError: the result is longer than ``max_length`` and ``truncation`` is False.
        """
        _check_text(text, "text")
        if pair is not None:
            _check_text(pair, "pair")
        limit = self._limit(max_length, add_special_tokens, pair is not None)
        ids = self._ids([text] if pair is None else [text, pair])
        return self._assemble(ids[0], ids[1] if pair is not None else None, add_special_tokens, limit, truncation)

    def __call__(
        self,
        texts: str | Sequence[str],
        pairs: str | Sequence[str] | None = None,
        max_length: int | None = None,
        truncation: bool = False,
        padding: bool | str = True,
    ) -> dict[str, Tensor]:
        """Encodes a batch into right-padded tensors for :class:`formers.models.bert.BertModel`.

        Args:
            texts: one text or a list of B texts.
            pairs: optional second sequences, as many as ``texts``.
            max_length: longest row (special tokens included); ``None`` means ``max_len``.
            truncation: cut too-long rows (see :meth:`encode`) instead of raising.
            padding: ``True``/``"longest"`` pads to the longest row, ``"max_length"`` to ``max_length``
                (or ``max_len``), ``False`` requires rows of equal length.

        Returns:
            ``input_ids`` (B, T) long, ``token_type_ids`` (B, T) long and ``padding_mask`` (B, T) bool
            (True = real token).

        Raises:
            ValueError: a row too long without ``truncation``, ``pairs`` of another length, unequal rows
                with ``padding=False``, or an empty batch.
        """
        if padding not in (True, False, "longest", "max_length"):
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("texts is empty: a batch needs at least one text")
        for i, t in enumerate(texts):
            _check_text(t, f"texts[{i}]")
        if pairs is not None:
            pairs = [pairs] if isinstance(pairs, str) else list(pairs)
            if len(pairs) != len(texts):
                raise ValueError(f"pairs must hold one text per entry of texts ({len(texts)}), got {len(pairs)}")
            for i, t in enumerate(pairs):
                _check_text(t, f"pairs[{i}]")
        limit = self._limit(max_length, True, pairs is not None)
        ids = self._ids(texts + (pairs or []))
        n = len(texts)
        rows = [
            self._assemble(ids[i], ids[n + i] if pairs is not None else None, True, limit, truncation, row=i)
            for i in range(n)
        ]
        lengths = [len(r) for r in rows]
        if padding is False and len(set(lengths)) > 1:
            raise ValueError(f"padding=False needs rows of equal length, got lengths {sorted(set(lengths))}")
        width = limit if padding == "max_length" else max(lengths)
        # One tensor from padded lists: far cheaper than a copy per row.
        input_ids = torch.tensor([r.input_ids + [self.pad_id] * (width - len(r)) for r in rows], dtype=torch.long)
        token_type_ids = torch.tensor([r.token_type_ids + [0] * (width - len(r)) for r in rows], dtype=torch.long)
        padding_mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "padding_mask": padding_mask}

    def _limit(self, max_length: int | None, add_special_tokens: bool, is_pair: bool) -> int:
        if max_length is None:
            return self.max_len
        if isinstance(max_length, bool) or not isinstance(max_length, int):
            raise TypeError(f"max_length must be an int or None, got {max_length!r}")
        specials = (3 if is_pair else 2) if add_special_tokens else 0
        if max_length < specials + (2 if is_pair else 0):
            raise ValueError(
                f"max_length={max_length} leaves no room for text besides the {specials} special tokens"
                + (" (a pair needs at least 1 token per side)" if is_pair else "")
            )
        return max_length

    def _assemble(
        self,
        a: list[int],
        b: list[int] | None,
        add_special_tokens: bool,
        limit: int,
        truncation: bool,
        row: int | None = None,
    ) -> Encoding:
        specials = (3 if b is not None else 2) if add_special_tokens else 0
        total = len(a) + (len(b) if b is not None else 0) + specials
        if total > limit:
            if not truncation:
                where = "" if row is None else f"row {row}: "
                raise ValueError(
                    f"{where}the encoded text has {total} tokens (special tokens included) but the limit is {limit} "
                    f"(max_length, default max_len={self.max_len}); pass truncation=True to cut it"
                )
            a, b = truncate_longest_first(a, b, limit - specials)
        if not add_special_tokens:
            ids = a + (b or [])
            types = [0] * len(a) + [1] * len(b or [])
        elif b is None:
            ids = [self.cls_id, *a, self.sep_id]
            types = [0] * len(ids)
        else:
            ids = [self.cls_id, *a, self.sep_id, *b, self.sep_id]
            types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        return Encoding(input_ids=ids, token_type_ids=types)

    # ----------------------------------------------------------------------------------------------- decoding
    def decode(self, ids: Iterable[int] | Tensor, skip_special_tokens: bool = True) -> str:
        """Joins word pieces back into text (``##`` pieces glued, spaces before punctuation removed).

        Lower-casing, accent stripping and ``[UNK]`` are not undone. Args: ``ids`` (T,) ints or a 1-D tensor.
        """
        if isinstance(ids, Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes a 1-D sequence of ids, got a tensor of shape {tuple(ids.shape)}")
            ids = ids.tolist()
        tokens = [
            self.id_to_token(i)
            for i in ids
            if not (skip_special_tokens and i in self._special_ids)
        ]
        return self._decoder.decode(tokens)


def truncate_longest_first(a: list[int], b: list[int] | None, budget: int) -> tuple[list[int], list[int] | None]:
    """Cuts ``a`` (and ``b``) to ``budget`` tokens in all, as ``tokenizers``' ``LongestFirst`` strategy.

    A single sequence keeps its first ``budget`` tokens. A pair keeps the shorter side whole when the longer
    one can absorb the cut; otherwise the shorter side keeps ``budget // 2`` and the longer the rest (at equal
    lengths, ``a`` counts as the shorter).
    """
    if b is None:
        return a[:budget], None
    n1, n2 = len(a), len(b)
    if n1 + n2 <= budget:
        return a, b
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    if swap:
        n1, n2 = n2, n1
    return a[:n1], b[:n2]


def check_vocab_matches(
    tokenizer: WordPieceTokenizer, model: Any, model_source: str | Path | None = None
) -> None:
    """Raises unless ``tokenizer`` is the vocabulary ``model`` was trained with, as far as can be told.

    Checked, on the host before any kernel: equal vocabulary sizes (a larger vocabulary would index past the
    embedding, a smaller one means another vocabulary), the padding id, and — when the model's config stores
    tokenizer metadata with a ``vocab_sha256`` — the vocabulary's fingerprint. Training code records it with
    ``BertConfig(..., tokenizer=tokenizer.config())`` and saves ``tokenizer.save(checkpoint_dir)`` beside the weights.

    Args:
        tokenizer: the tokenizer about to feed the model.
        model: a model with a ``config`` (``vocab_size``, optionally ``pad_id`` and ``tokenizer``), or a config.
        model_source: the checkpoint's path, named in the error.

    Raises:
        ValueError: naming both sizes (or ids, or fingerprints) and both files.
    """
    config = getattr(model, "config", model)
    model_vocab = getattr(config, "vocab_size", None)
    if not isinstance(model_vocab, int):
        raise TypeError(f"model must have a config with an int vocab_size, got {type(model).__name__}")
    where = f"the model ({model_source})" if model_source is not None else "the model"
    if tokenizer.vocab_size != model_vocab:
        raise ValueError(
            f"vocabulary mismatch: the tokenizer ({tokenizer.source}) has {tokenizer.vocab_size} tokens but "
            f"{where} was built for vocab_size={model_vocab}; use the vocab.txt saved with the checkpoint"
        )
    pad_id = getattr(config, "pad_id", None)
    if isinstance(pad_id, int) and pad_id != tokenizer.pad_id:
        raise ValueError(
            f"vocabulary mismatch: the tokenizer ({tokenizer.source}) has {tokenizer.special_tokens['pad']} at id "
            f"{tokenizer.pad_id} but {where} pads with id {pad_id}"
        )
    meta = getattr(config, "tokenizer", None)
    expected = meta.get("vocab_sha256") if isinstance(meta, dict) else None
    if expected and expected != tokenizer.fingerprint:
        raise ValueError(
            f"vocabulary mismatch: the tokenizer ({tokenizer.source}) has the same size ({model_vocab}) as "
            f"{where} but other tokens (sha256 {tokenizer.fingerprint[:12]}... vs {expected[:12]}...)"
        )


def _check_text(text: Any, name: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
