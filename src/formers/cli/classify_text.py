"""``formers classify-text --checkpoint RUN TEXT...``: the labels of each text under a fine-tuned text classifier.

The run (or checkpoint) directory comes from a ``text_classification`` recipe: it holds the classifier, its
``vocab.txt`` and ``labels.json``. Texts come from the arguments, ``--file`` (one per line; ``-`` for stdin) or stdin.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from formers.inference.text_classification import check_texts, classify_texts


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify-text", help="label texts with a fine-tuned text classifier (text_classification run)")
    p.add_argument("--checkpoint", required=True, type=Path, help="run or checkpoint directory")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to label (default: --file or stdin)")
    p.add_argument("--file", type=Path, default=None, help="read texts from this file, one per line ('-' = stdin)")
    p.add_argument("--top-k", type=int, default=None, help="labels to print per text (default: all)")
    p.add_argument("--truncate", action="store_true", help="cut texts longer than the model's limit, not refuse them")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=run)


def read_texts(texts: list[str], file: Path | None) -> list[str]:
    """The arguments, then the lines of ``file`` (``-`` = stdin); stdin when neither is given."""
    out = list(texts)
    if file is not None:
        if str(file) == "-":
            out += sys.stdin.read().splitlines()
        elif not file.is_file():
            raise FileNotFoundError(f"--file {str(file)!r} does not exist")
        else:
            out += file.read_text(encoding="utf-8").splitlines()
    elif not out:
        if sys.stdin.isatty():
            raise ValueError("no texts: give them as arguments, with --file, or on stdin")
        out = sys.stdin.read().splitlines()
    if not out:
        raise ValueError("no texts to classify (the input is empty)")
    return out


def run(args: argparse.Namespace) -> int:
    texts = read_texts(args.texts, args.file)
    check_texts(texts)
    results = classify_texts(args.checkpoint, texts, args.top_k, args.device, args.truncate)
    for text, ranked in zip(texts, results, strict=True):
        print(text)
        for rank, (label, prob) in enumerate(ranked, start=1):
            print(f"  {rank}. {prob:7.2%}  {label}")
    return 0
