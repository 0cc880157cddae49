"""Sentence embeddings from a BERT encoder directory, as sentence-transformers computes them.

The directory is a Hugging Face or formers BERT directory holding ``vocab.txt`` (with ``tokenizer_config.json``
for casing), e.g. sentence-transformers' all-MiniLM-L6-v2. Embeddings are the mean of the real tokens' final states
(or the ``[CLS]`` state when ``1_Pooling/config.json`` says so), L2-normalised unless asked otherwise. The
vocabulary is checked against the checkpoint and every sentence against the length limit (the model's
``max_seq_len``, and sentence-transformers' ``max_seq_length`` when the directory sets one) before the model runs.
A blank sentence (empty or only whitespace) is refused, naming it: its embedding would be that of ``[CLS] [SEP]``
alone, which means nothing and would sit among the real ones unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from formers.data.tokenizers.wordpiece import WordPieceTokenizer, check_vocab_matches
from formers.devices import resolve_device
from formers.files import atomic_file
from formers.hub import from_pretrained, resolve_checkpoint_dir
from formers.layers import check_int, check_text
from formers.models.bert import BertEncoder, mean_pool

POOLING_CONFIG = Path("1_Pooling") / "config.json"
SBERT_CONFIG = "sentence_bert_config.json"
OUTPUT_SUFFIXES = (".npy", ".safetensors", ".jsonl")


def bert_encoder_of(model: nn.Module) -> BertEncoder:
    """The :class:`BertEncoder` inside any formers BERT model (base, masked LM or classifier)."""
    for candidate in (getattr(model, "encoder", None), getattr(getattr(model, "bert", None), "encoder", None)):
        if isinstance(candidate, BertEncoder):
            return candidate
    raise ValueError(
        f"the model is a {type(model).__name__} (family {getattr(model, 'family', '?')!r}); "
        "sentence embeddings need a BERT encoder"
    )


def directory_pooling(directory: Path) -> str:
    """``"mean"`` or ``"cls"``: the pooling a sentence-transformers directory declares (``"mean"`` when none)."""
    path = directory / POOLING_CONFIG
    if not path.is_file():
        return "mean"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt JSON in {path}: {e}") from None
    modes = [k.removeprefix("pooling_mode_") for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
    if modes == ["mean_tokens"]:
        return "mean"
    if modes == ["cls_token"]:
        return "cls"
    raise ValueError(f"{path} asks for pooling {modes}; formers supports mean_tokens or cls_token alone")


def directory_max_length(directory: Path, encoder: BertEncoder, tokenizer: WordPieceTokenizer) -> tuple[int, str]:
    """Longest input in tokens and where that limit comes from.

    The model's ``max_seq_len``, capped by the tokenizer's ``model_max_length`` and sentence-transformers'
    ``max_seq_length`` (all-MiniLM-L6-v2 was trained on 256 tokens at most).
    """
    limit, source = encoder.config.max_seq_len, "the model's max_seq_len"
    if tokenizer.max_len < limit:
        limit, source = tokenizer.max_len, "the tokenizer's model_max_length"
    path = directory / SBERT_CONFIG
    if path.is_file():
        try:
            sbert = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise ValueError(f"corrupt {path}: {e}") from None
        if isinstance(sbert, int) and 2 <= sbert < limit:
            limit, source = sbert, f"max_seq_length in {path}"
    return limit, source


@torch.inference_mode()
def embed_texts(
    encoder: BertEncoder,
    tokenizer: WordPieceTokenizer,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 32,
    pooling: str = "mean",
    normalize: bool = True,
    truncate: bool = False,
    limit_source: str = "max_length",
) -> Tensor:
    """Sentence embeddings of ``texts``, computed in batches of similar length.

    Args:
        encoder: a BERT encoder (in eval mode).
        tokenizer: its WordPiece tokenizer (checked with :func:`check_vocab_matches` by the caller).
        texts: N sentences, none blank.
        max_length: longest input in tokens, ``[CLS]`` and ``[SEP]`` included.
        batch_size: sentences per forward pass.
        pooling: ``"mean"`` over real tokens, or ``"cls"`` (the first token's state).
        normalize: L2-normalise each embedding.
        truncate: cut sentences longer than ``max_length`` instead of raising.
        limit_source: where ``max_length`` comes from, named in the error.

    Returns:
        (N, D) float32 embeddings on the CPU, in the order of ``texts``.

    Raises:
        ValueError: a sentence is blank, not UTF-8 text, or longer than ``max_length`` while ``truncate`` is False
            (checked for all sentences before the model runs), or bad ``batch_size``/``pooling``.
    """
    check_int(batch_size, "batch_size", minimum=1)
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
    if isinstance(texts, str):
        raise TypeError("texts must be a list of sentences, got one str; pass [text]")
    if not texts:
        raise ValueError("no sentences to embed")
    for i, t in enumerate(texts):
        check_text(t, f"sentence {i + 1}")
        if not t.strip():
            raise ValueError(f"sentence {i + 1} is empty; give at least one word to embed")
    rows = [tokenizer.encode(t, max_length=max_length, truncation=True) for t in texts]
    if not truncate:
        for i, t in enumerate(texts):
            if len(rows[i]) == max_length:  # possibly cut: measure the full length
                n = len(tokenizer.tokenize(t)) + 2
                if n > max_length:
                    raise ValueError(
                        f"sentence {i + 1} has {n} tokens ([CLS] and [SEP] included) but at most {max_length} "
                        f"fit ({limit_source}); pass --truncate (truncate=True) to cut it: {t[:60]!r}"
                    )
    device = encoder.embed.weight.device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # similar lengths share a batch: less padding
    out = torch.empty(len(rows), encoder.config.embed_dim, dtype=torch.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(rows[i]) for i in idx)
        ids = torch.full((len(idx), width), tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.bool)
        for j, i in enumerate(idx):
            ids[j, : len(rows[i])] = torch.tensor(rows[i])
            mask[j, : len(rows[i])] = True
        ids, mask = ids.to(device), mask.to(device)
        hidden = encoder(ids, torch.zeros_like(ids), mask)  # (b, T, D)
        if pooling == "mean":
            pooled = mean_pool(hidden.float(), mask, normalize=normalize)  # (b, D)
        else:
            pooled = hidden[:, 0].float()  # (b, D)
            pooled = torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled
        out[torch.tensor(idx)] = pooled.cpu()
    return out


def load_embedder(
    model_dir: str | Path, vocab: str | Path | None = None, device: str = "auto"
) -> tuple[BertEncoder, WordPieceTokenizer, Path]:
    """Loads the encoder and tokenizer of a model directory and checks that they belong together.

    Args:
        model_dir: Hugging Face or formers BERT directory (or a run directory).
        vocab: another ``vocab.txt`` or tokenizer directory to use instead of the model directory's; a bare
            file takes its casing options from the model directory's ``tokenizer_config.json``.
        device: ``auto``, ``cpu`` or ``cuda``.

    Raises:
        FileNotFoundError: no model or vocabulary files.
        ValueError: the vocabulary does not match the checkpoint (sizes and files named) or the model is no BERT.
    """
    directory = resolve_checkpoint_dir(model_dir)
    if vocab is None:
        tokenizer = WordPieceTokenizer.from_directory(directory)
    elif Path(vocab).is_dir():
        tokenizer = WordPieceTokenizer.from_directory(vocab)
    else:
        options = WordPieceTokenizer.from_directory(directory) if (directory / "vocab.txt").is_file() else None
        tokenizer = WordPieceTokenizer.from_vocab_file(
            vocab,
            lowercase=options.lowercase if options else True,
            strip_accents=options.strip_accents if options else None,
            tokenize_chinese_chars=options.tokenize_chinese_chars if options else True,
        )
    model = from_pretrained(directory, device=resolve_device(device))
    encoder = bert_encoder_of(model)
    check_vocab_matches(tokenizer, encoder, model_source=directory)
    return encoder, tokenizer, directory


def write_embeddings(path: Path, embeddings: Tensor, texts: Sequence[str], meta: dict[str, Any]) -> None:
    """Writes (N, D) ``embeddings`` to ``.npy``, ``.safetensors`` (``embeddings`` + metadata) or ``.jsonl``.

    The file is written to a temporary name and renamed, so a failure never leaves a partial file.
    """
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--output must end in one of {OUTPUT_SUFFIXES}, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, suffix=suffix) as tmp:
        if suffix == ".npy":
            np.save(tmp, embeddings.numpy())
        elif suffix == ".safetensors":
            save_file({"embeddings": embeddings.contiguous()}, tmp, metadata={k: str(v) for k, v in meta.items()})
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for text, row in zip(texts, embeddings.tolist(), strict=True):
                    f.write(json.dumps({"text": text, "embedding": row}, ensure_ascii=False) + "\n")
