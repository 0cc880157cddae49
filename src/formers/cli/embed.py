"""``formers embed`` and ``formers similarity``: sentence embeddings from a BERT encoder directory.

``formers embed --model DIR [SENTENCE ...] [--file F] [--output out.npy|.safetensors|.jsonl]`` embeds sentences
given as arguments, read from a file (one per line) or, with neither, from stdin; without ``--output`` it prints
one JSON object per sentence. ``formers similarity --model DIR SENT_A SENT_B [...]`` prints the cosine similarity
of every pair (``--matrix`` for the whole matrix).

The directory is a Hugging Face or formers BERT directory holding ``vocab.txt`` (with ``tokenizer_config.json``
for casing) — e.g. sentence-transformers' all-MiniLM-L6-v2. Embeddings are as sentence-transformers computes
them: the mean of the real tokens' final states (or the ``[CLS]`` state when ``1_Pooling/config.json`` says so),
L2-normalised unless ``--no-normalize``. The vocabulary is checked against the checkpoint and every sentence
against the length limit (the model's ``max_seq_len``, and sentence-transformers' ``max_seq_length`` when the
directory sets one) before the model runs; ``--truncate`` cuts long sentences instead of refusing them. Files and
stdin are read as UTF-8 (an undecodable byte is refused, naming its line); a blank sentence, as an argument or a
line, is refused by number, as ``formers translate`` refuses an empty argument: it has no meaningful embedding.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from formers.cli.text_input import check_arguments, read_file_lines, read_stdin_lines
from formers.inference.embedding import (
    OUTPUT_SUFFIXES,
    directory_max_length,
    directory_pooling,
    embed_texts,
    load_embedder,
    write_embeddings,
)
from formers.layers import check_int


def read_sentences(sentences: Sequence[str], file: Path | None) -> list[str]:
    """Sentences from the arguments, then the lines of ``file`` (``-`` = stdin); stdin when neither is given."""
    check_arguments(sentences)
    out = list(sentences)
    if file is not None:
        out += read_stdin_lines() if str(file) == "-" else read_file_lines(file, "--file")
    elif not out:
        if sys.stdin.isatty():
            raise ValueError("no sentences: give them as arguments, with --file, or on stdin")
        out = read_stdin_lines()
    if not out:
        raise ValueError("no sentences to embed (the input is empty)")
    return out



def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="BERT directory with vocab.txt (e.g. all-MiniLM-L6-v2)")
    p.add_argument("--file", type=Path, default=None, help="read sentences from this file, one per line ('-' = stdin)")
    p.add_argument("--vocab", type=Path, default=None, help="vocab.txt or tokenizer directory (default: the model's)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per forward pass (default 32)")
    p.add_argument("--pooling", choices=("auto", "mean", "cls"), default="auto",
                   help="mean over real tokens or the [CLS] state (default: as the directory declares, else mean)")
    p.add_argument("--truncate", action="store_true", help="cut sentences longer than the model's limit")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="sentence embeddings from a BERT directory (print or save)")
    p.add_argument("sentences", nargs="*", metavar="SENTENCE", help="sentences (default: --file or stdin)")
    _add_common(p)
    p.add_argument("--output", type=Path, default=None,
                   help="write .npy, .safetensors or .jsonl instead of printing JSON lines")
    p.add_argument("--no-normalize", action="store_true", help="keep the raw pooled vectors (no L2 normalisation)")
    p.set_defaults(func=run_embed)
    p = sub.add_parser("similarity", help="cosine similarity of sentences under a BERT sentence encoder")
    p.add_argument("sentences", nargs="*", metavar="SENTENCE", help="two or more sentences (or --file / stdin)")
    _add_common(p)
    p.add_argument("--matrix", action="store_true", help="print the whole cosine matrix instead of the pairs")
    p.set_defaults(func=run_similarity)


def _embed_from_args(args: argparse.Namespace, normalize: bool, least: int = 1) -> tuple[Tensor, list[str], Path]:
    output = getattr(args, "output", None)
    if output is not None and output.suffix.lower() not in OUTPUT_SUFFIXES:  # fail before loading the model
        raise ValueError(f"--output must end in one of {OUTPUT_SUFFIXES}, got {str(output)!r}")
    check_int(args.batch_size, "--batch-size", minimum=1)
    texts = read_sentences(args.sentences, args.file)
    if len(texts) < least:
        raise ValueError(f"{args.command} needs at least {least} sentences, got {len(texts)}")
    for i, text in enumerate(texts):  # before the model loads; numbered as embed_texts numbers them
        if not text.strip():
            raise ValueError(f"sentence {i + 1} is empty; give at least one word to embed")
    encoder, tokenizer, directory = load_embedder(args.model, args.vocab, args.device)
    pooling = directory_pooling(directory) if args.pooling == "auto" else args.pooling
    limit, source = directory_max_length(directory, encoder, tokenizer)
    emb = embed_texts(encoder, tokenizer, texts, limit, args.batch_size, pooling, normalize, args.truncate, source)
    return emb, texts, directory


def run_embed(args: argparse.Namespace) -> int:
    normalize = not args.no_normalize
    emb, texts, directory = _embed_from_args(args, normalize)
    if args.output is None:
        for text, row in zip(texts, emb.tolist(), strict=True):
            print(json.dumps({"text": text, "embedding": row}, ensure_ascii=False))
        return 0
    meta = {"model": str(directory), "normalized": normalize, "count": len(texts), "dim": emb.shape[1]}
    write_embeddings(args.output, emb, texts, meta)
    print(f"wrote {len(texts)} embeddings of dimension {emb.shape[1]} to {args.output}", file=sys.stderr)
    return 0


def run_similarity(args: argparse.Namespace) -> int:
    emb, texts, _ = _embed_from_args(args, normalize=True, least=2)
    sims = (emb @ emb.T).clamp(-1.0, 1.0)  # (N, N) cosines of unit vectors
    if args.matrix:
        for i in range(len(texts)):
            print(" ".join(f"{sims[i, j].item():7.4f}" for j in range(len(texts))) + f"  {texts[i]}")
        return 0
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            print(f"{sims[i, j].item():.4f}\t{texts[i]}\t{texts[j]}")
    return 0
