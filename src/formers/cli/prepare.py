"""``formers prepare TEXT_FILE --out DIR [--tokenizer char|gpt2|PATH] [--gpt2-dir DIR] [--val-fraction 0.1]``.

Tokenizes a text file once into ``DIR/{train.bin, val.bin, meta.json, tokenizer.json}`` for language-model
training (see :func:`formers.data.lm.prepare_corpus`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from formers.data.lm import prepare_corpus


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="tokenize a text file into memory-mapped train/val token files")
    p.add_argument("text_file", type=Path, help="UTF-8 text corpus, e.g. tinyshakespeare's input.txt")
    p.add_argument("--out", type=Path, required=True, help="output folder (written atomically)")
    p.add_argument("--tokenizer", default="char",
                   help="'char' (characters of the text), 'gpt2' (GPT-2 BPE) or a saved tokenizer file (default: char)")
    p.add_argument("--gpt2-dir", type=Path, default=None,
                   help="folder holding encoder.json and vocab.bpe (default: $FORMERS_DATA_DIR/gpt2-bpe, "
                        "shared/data/gpt2-bpe, else a checksummed download)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of characters kept for validation (default: 0.1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    meta = prepare_corpus(args.text_file, args.out, tokenizer=args.tokenizer, val_fraction=args.val_fraction,
                          gpt2_files_dir=args.gpt2_dir)
    print(f"tokenizer {meta['tokenizer']}: vocab_size {meta['vocab_size']:,}, dtype {meta['dtype']}")
    print(f"train: {meta['train_tokens']:,} tokens ({meta['train_chars']:,} characters)")
    print(f"val:   {meta['val_tokens']:,} tokens ({meta['val_chars']:,} characters)")
    print(f"wrote {args.out}/{{train.bin, val.bin, meta.json, tokenizer.json}}")
    return 0
