"""Language-model data: a text file tokenized once into memory-mapped token files, read as random windows.

:func:`prepare_corpus` follows nanoGPT's ``prepare.py``: the text is split by characters (first
``1 - val_fraction`` for training, the rest for validation), each part is tokenized and written as a flat
``train.bin`` / ``val.bin`` of ``uint16`` ids (``uint32`` when the vocabulary has 65,536 ids or more), next to
``meta.json`` and the tokenizer (``tokenizer.json``). :class:`TokenFile` opens a ``.bin`` as a ``numpy.memmap``,
so training reads only the windows it samples.

:class:`LMWindowLoader` draws ``batch_size`` random windows per step: ``input_ids = tokens[i : i + T]`` and
``labels = tokens[i + 1 : i + T + 1]``. The starts of an epoch are a pure function of ``(seed, epoch)``, so the
Trainer resumes by ``set_epoch(epoch)`` and skipping the consumed batches. :func:`lm_eval_batches` gives a
fixed evaluation set of evenly spaced, non-overlapping windows.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import numpy as np
import torch

from formers.data.tokenizers.base import Tokenizer
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.gpt2_bpe import GPT2BPETokenizer
from formers.data.tokenizers.joint_bpe import SubwordTokenizer
from formers.data.tokenizers.load import load_tokenizer
from formers.files import atomic_directory

TRAIN_FILE, VAL_FILE, META_FILE, TOKENIZER_FILE = "train.bin", "val.bin", "meta.json", "tokenizer.json"
TOKENIZER_KINDS = ("char", "gpt2")
"""Built-in tokenizer names accepted by :func:`prepare_corpus`; anything else must be a tokenizer file path."""

TokenSource = Union[np.ndarray, "TokenFile", torch.Tensor]


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` when every id fits (``vocab_size <= 65536``), else ``uint32``."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def prepare_corpus(
    text_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    tokenizer: str | os.PathLike[str] = "char",
    val_fraction: float = 0.1,
    gpt2_files_dir: str | os.PathLike[str] | None = None,
) -> dict:
    """Tokenizes a UTF-8 text file once into ``out_dir/{train.bin, val.bin, meta.json, tokenizer.json}``.

    The text is split by characters at ``int(len(text) * (1 - val_fraction))`` before tokenizing (nanoGPT's
    split). ``out_dir`` is written atomically: files go to a temporary sibling folder, are fsynced, and the
    folder is renamed onto ``out_dir`` (replacing an earlier prepared corpus there).

    Args:
        text_path: the corpus, a UTF-8 text file (read as bytes, so line endings are kept as they are).
        out_dir: output folder; must not exist, be empty, or hold an earlier prepared corpus (``meta.json``).
        tokenizer: ``"char"`` (vocabulary built from the whole text), ``"gpt2"`` (GPT-2's BPE), or the path of
            a saved character or BPE tokenizer, a file or a directory holding one
            (:func:`formers.data.tokenizers.load_tokenizer`).
        val_fraction: share of characters for validation, in ``(0, 1)``.
        gpt2_files_dir: folder with ``encoder.json`` + ``vocab.bpe`` for ``"gpt2"`` (default: found by
            :func:`formers.data.tokenizers.gpt2_bpe.find_gpt2_files`).

    Returns:
        The metadata written to ``meta.json``: ``tokenizer`` (kind), ``vocab_size``, ``dtype``,
        ``train_tokens``, ``val_tokens``, ``train_chars``, ``val_chars``, ``source``, ``sha256``, ``val_fraction``,
        ``eot_id`` (BPE only).

    Raises:
        ValueError: unknown tokenizer kind, ``val_fraction`` out of range, an empty text, a split with no
            tokens, or an ``out_dir`` holding other files.
        FileNotFoundError: ``text_path`` or a tokenizer file is missing.
    """
    text_path, out_dir = Path(text_path), Path(out_dir)
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    tok, kind = _resolve_tokenizer(tokenizer, gpt2_files_dir)  # before reading the text: fail fast on a bad kind
    if not text_path.is_file():
        raise FileNotFoundError(f"text file {os.fspath(text_path)!r} does not exist")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / META_FILE).is_file())):
        raise ValueError(
            f"out_dir {os.fspath(out_dir)!r} exists and is not an empty folder or a prepared corpus (no {META_FILE}); "
            "refusing to replace it"
        )
    raw = text_path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"text file {os.fspath(text_path)!r} is not valid UTF-8 ({exc})") from exc
    if not text:
        raise ValueError(f"text file {os.fspath(text_path)!r} is empty")
    if tok is None:
        tok = CharTokenizer.from_corpus(text)
    split = int(len(text) * (1.0 - val_fraction))
    parts = {"train": text[:split], "val": text[split:]}
    dtype = token_dtype(tok.vocab_size)
    arrays = {name: _encode(tok, part).astype(dtype) for name, part in parts.items()}
    for name, arr in arrays.items():
        if arr.size == 0:
            raise ValueError(
                f"the {name} split of {os.fspath(text_path)!r} has no tokens ({len(text)} characters, "
                f"val_fraction={val_fraction}); use a longer text or another val_fraction"
            )
    meta = {
        "tokenizer": kind,
        "vocab_size": tok.vocab_size,
        "dtype": dtype.name,
        "train_tokens": int(arrays["train"].size),
        "val_tokens": int(arrays["val"].size),
        "train_chars": len(parts["train"]),
        "val_chars": len(parts["val"]),
        "val_fraction": float(val_fraction),
        "source": os.fspath(text_path.resolve()),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "tokenizer_file": TOKENIZER_FILE,
    }
    if isinstance(tok, GPT2BPETokenizer):
        try:
            meta["eot_id"] = tok.eot_id
        except ValueError:
            pass
    with atomic_directory(out_dir) as tmp:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a data folder is as readable as any other
        arrays["train"].tofile(tmp / TRAIN_FILE)
        arrays["val"].tofile(tmp / VAL_FILE)
        tok.save(tmp / TOKENIZER_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def _resolve_tokenizer(
    tokenizer: str | os.PathLike[str] | Tokenizer, gpt2_files_dir: str | os.PathLike[str] | None
) -> tuple[Tokenizer | None, str]:
    """Returns (tokenizer or None for a char vocabulary still to be built, kind name)."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer, _kind(tokenizer)
    if not isinstance(tokenizer, (str, os.PathLike)):
        raise TypeError(f"tokenizer must be 'char', 'gpt2' or a tokenizer file path, got {type(tokenizer).__name__}")
    if tokenizer == "char":
        return None, "char"
    if tokenizer == "gpt2":
        return GPT2BPETokenizer.from_gpt2_dir(gpt2_files_dir), "gpt2"
    if Path(tokenizer).exists():
        tok = load_tokenizer(tokenizer)
        return tok, _kind(tok)
    raise ValueError(
        f"tokenizer must be one of {TOKENIZER_KINDS} or the path of an existing tokenizer file or directory, "
        f"got {os.fspath(tokenizer)!r}"
    )


def _kind(tok: Tokenizer) -> str:
    """``"char"`` or ``"bpe"``: the tokenizers whose ids are a plain token stream (no framing special tokens)."""
    if isinstance(tok, CharTokenizer):
        return "char"
    if isinstance(tok, (GPT2BPETokenizer, SubwordTokenizer)):
        return "bpe"
    raise ValueError(f"a language-model corpus needs a character or BPE tokenizer, got a {type(tok).__name__}")


def _encode(tok: Tokenizer, text: str) -> np.ndarray:
    """Ids of the whole ``text``, shape ``(L,)``; the character and GPT-2 tokenizers have faster paths."""
    if isinstance(tok, CharTokenizer):
        return tok.encode_array(text)
    if isinstance(tok, GPT2BPETokenizer):
        return tok.encode_long(text)
    return np.asarray(tok.encode(text), dtype=np.int64)


class TokenFile:
    """A flat token file (``train.bin`` / ``val.bin``) opened read-only as a ``numpy.memmap`` of shape ``(N,)``.

    Args:
        path: the ``.bin`` file.
        dtype: its element type; by default read from the ``meta.json`` next to it.

    Raises:
        FileNotFoundError: ``path`` (or, without ``dtype``, its ``meta.json``) is missing.
        ValueError: the file is empty or its size is not a whole number of elements.
    """

    def __init__(self, path: str | os.PathLike[str], dtype: str | np.dtype | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"token file {os.fspath(self.path)!r} does not exist")
        self.meta: dict = {}
        meta_path = self.path.parent / META_FILE
        if meta_path.is_file():
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if dtype is None:
            if "dtype" not in self.meta:
                raise FileNotFoundError(f"dtype not given and {os.fspath(meta_path)!r} (which records it) is missing")
            dtype = self.meta["dtype"]
        self.dtype = np.dtype(dtype)
        size = self.path.stat().st_size
        if size == 0 or size % self.dtype.itemsize:
            raise ValueError(
                f"token file {os.fspath(self.path)!r} must hold a positive whole number of {self.dtype.name} "
                f"elements, got {size} bytes"
            )
        self.tokens: np.memmap = np.memmap(self.path, dtype=self.dtype, mode="r")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __getitem__(self, index):  # noqa: ANN001 (numpy indexing)
        return self.tokens[index]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # noqa: ANN001 (numpy protocol)
        return np.asarray(self.tokens, dtype=dtype)

    def __repr__(self) -> str:
        return f"TokenFile({os.fspath(self.path)!r}, tokens={len(self)}, dtype={self.dtype.name})"


def _as_token_array(tokens: TokenSource, block_size: int) -> np.ndarray:
    """Validates ``tokens`` (1-D, at least ``block_size + 1`` long) and returns it as a numpy array (no copy)."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if isinstance(tokens, TokenFile):
        arr = tokens.tokens
    elif isinstance(tokens, torch.Tensor):
        arr = tokens.detach().cpu().numpy()
    elif isinstance(tokens, np.ndarray):
        arr = tokens
    else:
        raise TypeError(f"tokens must be a TokenFile, numpy array or torch tensor, got {type(tokens).__name__}")
    if arr.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"tokens must hold integers, got dtype {arr.dtype}")
    if arr.shape[0] == 0:
        raise ValueError("tokens is empty: the corpus has no tokens")
    if arr.shape[0] < block_size + 1:
        raise ValueError(
            f"tokens must hold at least block_size + 1 = {block_size + 1} tokens for one window, got {arr.shape[0]}"
        )
    return arr


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _windows(arr: np.ndarray, starts: np.ndarray, block_size: int) -> dict[str, torch.Tensor]:
    """Gathers windows at ``starts`` (shape ``(B,)``) into ``input_ids`` / ``labels`` of shape ``(B, T)``."""
    idx = starts[:, None] + np.arange(block_size + 1)  # (B, T + 1)
    w = torch.from_numpy(arr[idx].astype(np.int64))  # (B, T + 1)
    return {"input_ids": w[:, :-1].contiguous(), "labels": w[:, 1:].contiguous()}  # (B, T) each


class LMWindowLoader:
    """Random training windows: ``steps_per_epoch`` batches per epoch, each of ``batch_size`` windows.

    Window starts are drawn uniformly (with replacement, as nanoGPT) from ``[0, N - T - 1]`` by a generator
    seeded with ``(seed, epoch)``, so an epoch's batches are the same in every run and on resume; building a
    batch only gathers its ``B * (T + 1)`` tokens, so skipping consumed batches is cheap.

    Args:
        tokens: the token stream, shape ``(N,)``: a :class:`TokenFile`, numpy array/memmap or tensor.
        block_size: window length ``T``.
        batch_size: windows per batch ``B``.
        seed: base seed.
        steps_per_epoch: batches per epoch (``len(loader)``).

    Yields:
        ``{"input_ids": (B, T) long, "labels": (B, T) long}`` with ``labels[:, t] == input_ids[:, t + 1]``
        for ``t < T - 1`` (labels are the next tokens).

    Raises:
        ValueError: ``block_size``, ``batch_size`` or ``steps_per_epoch`` below 1, an empty corpus or one
            shorter than ``block_size + 1``.
    """

    def __init__(
        self, tokens: TokenSource, block_size: int, batch_size: int, seed: int = 0, steps_per_epoch: int = 1000
    ) -> None:
        self._tokens = _as_token_array(tokens, block_size)
        _check_positive("batch_size", batch_size)
        _check_positive("steps_per_epoch", steps_per_epoch)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.block_size, self.batch_size, self.seed, self.steps_per_epoch = block_size, batch_size, seed, steps_per_epoch
        self.epoch = 0
        self.static_shapes = True  # every batch is (B, T): the Trainer may replay its steps as one CUDA graph

    def set_epoch(self, epoch: int) -> None:
        """Fixes the windows of the next iteration to those of ``epoch``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch

    def starts(self, epoch: int | None = None) -> np.ndarray:
        """Window starts of ``epoch`` (default: the current one), shape ``(steps_per_epoch, B)``."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch])
        high = self._tokens.shape[0] - self.block_size  # last valid start is N - T - 1
        return rng.integers(0, high, size=(self.steps_per_epoch, self.batch_size), dtype=np.int64)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for row in self.starts():
            yield _windows(self._tokens, row, self.block_size)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __repr__(self) -> str:
        return (
            f"LMWindowLoader(tokens={self._tokens.shape[0]}, block_size={self.block_size}, batch_size={self.batch_size}, "
            f"seed={self.seed}, steps_per_epoch={self.steps_per_epoch}, epoch={self.epoch})"
        )


class LMEvalBatches:
    """A fixed, re-iterable evaluation set of windows (see :func:`lm_eval_batches`)."""

    def __init__(self, tokens: np.ndarray, starts: np.ndarray, block_size: int, batch_size: int) -> None:
        self._tokens, self.starts, self.block_size, self.batch_size = tokens, starts, block_size, batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(0, len(self.starts), self.batch_size):
            yield _windows(self._tokens, self.starts[i : i + self.batch_size], self.block_size)

    def __len__(self) -> int:
        return -(-len(self.starts) // self.batch_size)

    @property
    def num_windows(self) -> int:
        """Windows in the set."""
        return len(self.starts)


def lm_eval_batches(
    tokens: TokenSource, block_size: int, batch_size: int, max_batches: int | None = None
) -> LMEvalBatches:
    """A deterministic evaluation set: non-overlapping windows spread evenly over the whole token stream.

    With ``K = min(max_batches * batch_size, (N - 1) // T)`` windows, the starts are
    ``floor(linspace(0, N - T - 1, K))`` (spaced at least ``T`` apart), so a capped set still samples the whole
    split rather than its beginning; without a cap the stream is tiled by ``(N - 1) // T`` windows.

    Args:
        tokens: the token stream, shape ``(N,)``.
        block_size: window length ``T``.
        batch_size: windows per batch (the last batch may be smaller).
        max_batches: cap on the number of batches, or None for all windows.

    Returns:
        A re-iterable of ``{"input_ids": (B, T) long, "labels": (B, T) long}`` batches, the same on every pass.

    Raises:
        ValueError: bad sizes, an empty corpus or one shorter than ``block_size + 1``.
    """
    arr = _as_token_array(tokens, block_size)
    _check_positive("batch_size", batch_size)
    if max_batches is not None:
        _check_positive("max_batches", max_batches)
    n = arr.shape[0]
    k = (n - 1) // block_size
    if max_batches is not None:
        k = min(k, max_batches * batch_size)
    # integer floor(i * (N - T - 1) / (K - 1)): exact, so neighbouring starts are at least T apart
    starts = (np.arange(k, dtype=np.int64) * (n - block_size - 1)) // max(k - 1, 1)
    return LMEvalBatches(arr, starts, block_size, batch_size)
