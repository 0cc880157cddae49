"""``load_tokenizer``: the tokenizer a model, checkpoint or prepared-corpus directory holds, whichever kind it is.

A directory is read in this order (the first match wins):

1. ``tokenizer.json``, told apart by content: ``{"kind": "char", ...}`` is a :class:`CharTokenizer` (formers
   character-level LMs); a Hugging Face ``tokenizers`` file with a ``BPE`` model is a :class:`GPT2BPETokenizer`
   when its pre-tokenizer is ``ByteLevel`` (formers byte-level LMs, Hugging Face GPT-2) and a
   :class:`SubwordTokenizer` when it is ``Metaspace`` (formers translation checkpoints); one with a ``WordPiece``
   model is a :class:`WordPieceTokenizer` (read with the directory's ``vocab.txt`` and ``tokenizer_config.json``
   when present).
2. ``vocab.txt``: BERT's WordPiece (formers masked-LM and classification checkpoints, Hugging Face BERT).
3. ``encoder.json`` + ``vocab.bpe`` (OpenAI's GPT-2 files) or ``vocab.json`` + ``merges.txt`` (Hugging Face's).

A training run directory holds its tokenizer in its checkpoints: resolve it first
(``formers.hub.resolve_checkpoint_dir``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from formers.data.tokenizers.base import Tokenizer
from formers.data.tokenizers.char import KIND as CHAR_KIND
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.gpt2_bpe import ENCODER_JSON, VOCAB_BPE, GPT2BPETokenizer
from formers.data.tokenizers.joint_bpe import SubwordTokenizer
from formers.data.tokenizers.wordpiece import WordPieceTokenizer
from formers.data.tokenizers.wordpiece_vocab import (
    TOKENIZER_JSON,
    VOCAB_NAME,
    read_tokenizer_json_vocab,
    tokenizer_json_options,
)
from formers.files import read_json

BPE_FILE_PAIRS = ((ENCODER_JSON, VOCAB_BPE), ("vocab.json", "merges.txt"))
"""GPT-2 vocabulary + merges file names: OpenAI's, then Hugging Face's."""

EXPECTED = (
    f"{TOKENIZER_JSON} (character, byte-level BPE, joint BPE or WordPiece), {VOCAB_NAME} (BERT WordPiece), "
    f"{ENCODER_JSON} + {VOCAB_BPE} or vocab.json + merges.txt (GPT-2 BPE)"
)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Loads the tokenizer saved in a directory (see the module docstring for what is read, in which order).

    Args:
        path: a formers checkpoint or model directory, a Hugging Face GPT-2 or BERT directory, a prepared
            language-model corpus (``formers prepare``), or a tokenizer JSON file itself.

    Returns:
        A :class:`CharTokenizer`, :class:`GPT2BPETokenizer`, :class:`SubwordTokenizer` or
        :class:`WordPieceTokenizer`, all satisfying the :class:`Tokenizer` protocol.

    Raises:
        FileNotFoundError: ``path`` does not exist, or the directory holds none of the files above (the message
            names the directory and the files expected).
        ValueError: a tokenizer file is corrupt or of a kind formers does not read (the file is named).
    """
    path = Path(path)
    if path.is_file():
        return _from_json_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer path {os.fspath(path)!r} does not exist")
    if (path / TOKENIZER_JSON).is_file():
        return _from_json_file(path / TOKENIZER_JSON, directory=path)
    if (path / VOCAB_NAME).is_file():
        return WordPieceTokenizer.from_directory(path)
    for vocab, merges in BPE_FILE_PAIRS:
        if (path / vocab).is_file() and (path / merges).is_file():
            return GPT2BPETokenizer.from_files(path / vocab, path / merges)
    hint = ""
    if (path / "checkpoints").is_dir():
        hint = "; it looks like a training run: pass one of its checkpoints (formers.hub.resolve_checkpoint_dir)"
    raise FileNotFoundError(f"{os.fspath(path)} holds no tokenizer: expected {EXPECTED}{hint}")


def _from_json_file(file: Path, directory: Path | None = None) -> Tokenizer:
    """The tokenizer of a JSON file; a WordPiece one is read with its ``directory``'s other BERT files."""
    data = read_json(file)
    kind = _json_kind(data, file)
    if kind == "char":
        return CharTokenizer.load(file)
    if kind == "byte_level_bpe":
        return GPT2BPETokenizer.load(file)
    if kind == "joint_bpe":
        return SubwordTokenizer.load(file)
    if directory is not None:
        return WordPieceTokenizer.from_directory(directory)
    return WordPieceTokenizer(read_tokenizer_json_vocab(data, file), source=file, **tokenizer_json_options(data, file))


def _json_kind(data: dict[str, Any], file: Path) -> str:
    """``"char"``, ``"byte_level_bpe"``, ``"joint_bpe"`` or ``"wordpiece"``: what a parsed tokenizer JSON holds.

    Raises:
        ValueError: naming ``file``, when it is none of these.
    """
    if data.get("kind") == CHAR_KIND:
        return "char"
    model = data.get("model")
    if not isinstance(model, dict):
        raise ValueError(
            f"{os.fspath(file)} is not a tokenizer file: expected a formers character tokenizer "
            f'({{"kind": "{CHAR_KIND}", ...}}) or a Hugging Face tokenizer.json (with a "model")'
        )
    model_type = model.get("type")
    if model_type == "WordPiece":
        return "wordpiece"
    if model_type == "BPE":
        pre_tokenizer = (data.get("pre_tokenizer") or {}).get("type")
        if pre_tokenizer == "ByteLevel":
            return "byte_level_bpe"
        if pre_tokenizer == "Metaspace":
            return "joint_bpe"
        raise ValueError(
            f"{os.fspath(file)} holds a BPE with a {pre_tokenizer!r} pre-tokenizer; formers reads byte-level BPE "
            "(ByteLevel, GPT-2) and joint BPE (Metaspace) files"
        )
    raise ValueError(
        f"{os.fspath(file)} holds a {model_type!r} model; formers reads BPE and WordPiece tokenizer.json files"
    )
