"""WordPiece vocabularies: read from BERT's files, or learnt from text reproducibly.

The files are those of a Hugging Face or formers BERT directory: ``vocab.txt`` (one token per line, the line
number being the id), ``tokenizer_config.json`` (casing, accents, CJK splitting, length limit, special tokens) and
``tokenizer.json`` (a ``tokenizers`` WordPiece model with a ``BertNormalizer``). :func:`learn_vocab` trains a new
vocabulary with ``tokenizers``' BPE trainer (see its docstring for why not with its WordPiece trainer).
:class:`formers.data.tokenizers.wordpiece.WordPieceTokenizer` builds on these.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

VOCAB_NAME = "vocab.txt"
CONFIG_NAME = "tokenizer_config.json"
TOKENIZER_JSON = "tokenizer.json"
MAX_CHARS_PER_WORD = 100  # longer words become [UNK], as in BERT's reference
SPECIAL_ROLES = ("pad", "unk", "cls", "sep", "mask")
DEFAULT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
_HF_UNLIMITED = 10**6  # transformers writes model_max_length=1e30 for "no limit"


# ---------------------------------------------------------------------------------------------------- reading
def read_vocab_file(path: str | Path) -> list[str]:
    """The tokens of a BERT ``vocab.txt``, one per line, the line number being the id.

    Lines lose only their trailing newline (as in ``transformers``' ``load_vocab``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is empty, not UTF-8, or lists a token twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"vocabulary file {path} is not UTF-8 text: {e}") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()  # the newline ending the last line
    if not tokens:
        raise ValueError(f"vocabulary file {path} is empty")
    seen: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        if tok in seen:
            raise ValueError(f"vocabulary file {path} lists {tok!r} twice (lines {seen[tok] + 1} and {i + 1})")
        seen[tok] = i
    return tokens


def read_tokenizer_json_vocab(data: dict[str, Any], path: Path) -> list[str]:
    """The tokens of a ``tokenizers`` WordPiece ``tokenizer.json`` (already parsed as ``data``), in id order.

    Raises:
        ValueError: ``path`` holds another model, other WordPiece settings than BERT's, or non-contiguous ids.
    """
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    if model.get("type") != "WordPiece":
        raise ValueError(f"{path} does not describe a WordPiece tokenizer (model {model.get('type')!r})")
    prefix = model.get("continuing_subword_prefix", "##")
    longest = model.get("max_input_chars_per_word", MAX_CHARS_PER_WORD)
    if prefix != "##" or longest != MAX_CHARS_PER_WORD:
        raise ValueError(
            f"{path} sets continuing_subword_prefix={prefix!r} and max_input_chars_per_word={longest}; formers "
            f"reads BERT's '##' and {MAX_CHARS_PER_WORD}"
        )
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"{path} must map its WordPiece tokens to the ids 0 .. n-1 (model.vocab)")
    return sorted(vocab, key=vocab.__getitem__)


def _token_text(value: Any) -> str | None:
    """A special token as written in ``tokenizer_config.json``: a string or an ``AddedToken`` dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def config_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """``WordPieceTokenizer`` keyword arguments from a (Hugging Face or formers) ``tokenizer_config.json``."""
    if cfg.get("do_basic_tokenize", True) is False:
        raise ValueError("tokenizer_config.json sets do_basic_tokenize=false, which formers does not support")
    if cfg.get("never_split"):
        raise ValueError("tokenizer_config.json sets never_split, which formers does not support")
    options: dict[str, Any] = {
        "lowercase": cfg.get("do_lower_case", True),
        "strip_accents": cfg.get("strip_accents"),
        "tokenize_chinese_chars": cfg.get("tokenize_chinese_chars", True),
    }
    max_len = cfg.get("model_max_length")
    if isinstance(max_len, (int, float)) and not isinstance(max_len, bool) and 2 <= max_len < _HF_UNLIMITED:
        options["max_len"] = int(max_len)
    specials = {r: _token_text(cfg.get(f"{r}_token")) for r in SPECIAL_ROLES}
    options["special_tokens"] = {r: t for r, t in specials.items() if t is not None}
    return options


def tokenizer_json_options(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Normaliser options from a ``tokenizers`` ``tokenizer.json`` with a ``BertNormalizer``."""
    norm = data.get("normalizer") or {}
    if norm.get("type") != "BertNormalizer":
        raise ValueError(f"{path} does not describe a BERT tokenizer (normalizer {norm.get('type')!r})")
    return {
        "lowercase": norm.get("lowercase", True),
        "strip_accents": norm.get("strip_accents"),
        "tokenize_chinese_chars": norm.get("handle_chinese_chars", True),
    }


# --------------------------------------------------------------------------------------------------- training
def learn_vocab(
    texts: Iterable[str], vocab_size: int, lowercase: bool = True, min_frequency: int = 2, limit_alphabet: int = 1000
) -> list[str]:
    """Learns a WordPiece vocabulary from ``texts`` with ``tokenizers``' BPE trainer, reproducibly.

    Text is normalised and split exactly as at encoding time. The special tokens take ids 0-4
    (``[PAD]`` ``[UNK]`` ``[CLS]`` ``[SEP]`` ``[MASK]``), then the characters (at most the ``limit_alphabet``
    most frequent; words holding any other character are left out of training), then their ``##``
    continuations, then merged pieces in the order they were learnt (most frequent pair first).

    This is what ``tokenizers``' ``WordPieceTrainer`` computes, but the same text always gives the same
    vocabulary: that trainer numbers the ``##`` continuations in hash-map order and breaks ties between equally
    frequent pairs by those numbers, so two runs could differ. (Ties are broken by code point here, so the last
    few pieces can differ from any one run of that trainer: none of 1,000-3,000 on the KJV Bible, 4 of 8,000.)
    Here every continuation character is renamed to a private-use character before the (deterministic)
    ``BpeTrainer`` sees the words, and renamed back after.

    Args:
        texts: training documents, one string each.
        vocab_size: target size including the special tokens; the result is smaller when the corpus
            offers fewer pieces.
        lowercase: an uncased vocabulary (lower-cased, accents stripped).
        min_frequency: a pair must occur this often to be merged.
        limit_alphabet: most distinct characters kept.

    Returns:
        The tokens in id order.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_ROLES):
        raise ValueError(
            f"vocab_size must be an int > {len(SPECIAL_ROLES)} (the special tokens), got {vocab_size!r}"
        )
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}")
    if isinstance(limit_alphabet, bool) or not isinstance(limit_alphabet, int) or limit_alphabet < 1:
        raise ValueError(f"limit_alphabet must be an int >= 1, got {limit_alphabet!r}")
    if not isinstance(lowercase, bool):
        raise TypeError(f"lowercase must be a bool, got {lowercase!r}")
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of documents, got a single str")
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    splitter = pre_tokenizers.BertPreTokenizer()
    word_counts: Counter[str] = Counter()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts must hold strings, got {type(text).__name__} at index {i}")
        word_counts.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    return _learn_from_counts(word_counts, vocab_size, min_frequency, limit_alphabet)


_PRIVATE_USE = 0xF0000  # Supplementary Private Use Area-A: stand-ins for ``##`` continuation characters


def _learn_from_counts(
    word_counts: Counter[str], vocab_size: int, min_frequency: int, limit_alphabet: int
) -> list[str]:
    """WordPiece tokens (specials, characters, ``##`` characters, merges) learnt from word counts, reproducibly.

    Each character after a word's first becomes its own private-use stand-in (the ``##`` form), so ``tokenizers``'
    ``BpeTrainer``, which numbers its alphabet by code point and breaks ties between pairs by those numbers, learns
    the same merges on every run; the stand-ins are renamed back afterwards.
    """
    char_counts: Counter[str] = Counter()
    for word, count in word_counts.items():
        for ch in word:
            char_counts[ch] += count
    kept = sorted(sorted(char_counts), key=lambda ch: -char_counts[ch])[:limit_alphabet]  # by count, then code point
    stand_in: dict[str, str] = {}
    code = _PRIVATE_USE
    for ch in sorted(kept):
        while chr(code) in char_counts:  # never a character the text itself uses
            code += 1
        stand_in[ch] = chr(code)
        code += 1
    original = {v: k for k, v in stand_in.items()}
    words = [
        (word[0] + "".join(stand_in[ch] for ch in word[1:]), count)
        for word, count in sorted(word_counts.items())
        if all(ch in stand_in for ch in word)
    ]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[DEFAULT_SPECIALS[r] for r in SPECIAL_ROLES],
        initial_alphabet=kept,  # every kept character stands alone too, also one never seen first in a word
        show_progress=False,
    )
    chunk = 4096  # repetitions of a word per string: a frequent word never becomes one huge string

    def occurrences():
        for word, count in words:
            for start in range(0, count, chunk):
                yield " ".join([word] * min(chunk, count - start))

    tk.train_from_iterator(occurrences(), trainer=trainer)
    vocab = tk.get_vocab()
    pieces = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in pieces] != list(range(len(pieces))):
        raise RuntimeError("the trained vocabulary has non-contiguous ids")  # a tokenizers invariant
    tokens = []
    for piece in pieces:
        if piece in original:  # a lone continuation character
            tokens.append("##" + original[piece])
        elif piece[0] in original:  # a piece from inside a word
            tokens.append("##" + "".join(original[ch] for ch in piece))
        elif len(piece) > 1 and piece[1] in original:  # a piece at the start of a word
            tokens.append(piece[0] + "".join(original[ch] for ch in piece[1:]))
        else:  # a special token or a word's first character
            tokens.append(piece)
    return tokens
