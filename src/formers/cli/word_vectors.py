"""``formers similar``, ``formers analogy`` and ``formers evaluate --vectors``: querying word vectors.

``--vectors`` takes a word2vec C file (``.bin`` binary, else text: gensim's ``save_word2vec_format`` files too),
formers' vector folder (``vectors.safetensors`` + ``vocab.txt``), or a word2vec checkpoint / run directory.

    formers similar --vectors runs/word2vec-cbow/vectors.bin king woman
    formers analogy --vectors runs/word2vec-cbow/vectors.bin man king woman      # man is to king as woman is to ?
    formers evaluate --vectors vectors.bin --analogies questions-words.txt --pairs wordsim353.tsv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from formers.inference.word_vectors import WordVectors


def _add_vectors(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--vectors", type=Path, required=required,
                   help="word vectors: C format file (.bin binary, else text), formers vectors folder, or a word2vec "
                        "checkpoint or run directory")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("similar", help="nearest words (cosine) of each word, from word vectors")
    _add_vectors(p)
    p.add_argument("words", nargs="+", help="words to look up")
    p.add_argument("--topn", type=int, default=10, help="neighbours per word (default 10)")
    p.add_argument("--restrict-vocab", type=int, default=None, help="search the N most frequent words only")
    p.set_defaults(func=run_similar)
    p = sub.add_parser("analogy", help="a is to b as c is to ? (3CosAdd: nearest to b - a + c)")
    _add_vectors(p)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("c")
    p.add_argument("--topn", type=int, default=5, help="candidates to print (default 5)")
    p.set_defaults(func=run_analogy)


def add_evaluation_args(p: argparse.ArgumentParser) -> None:
    """``formers evaluate``'s word-vector options (the command's translation options stay as they are)."""
    _add_vectors(p, required=False)
    p.add_argument("--analogies", type=Path, help="with --vectors: questions-words.txt style analogy file")
    p.add_argument("--pairs", type=Path, help="with --vectors: WordSim-353 style 'word1<TAB>word2<TAB>score' file")
    p.add_argument("--restrict-vocab", type=int, default=300_000,
                   help="with --vectors: score only questions/pairs among the N most frequent words (gensim's default "
                        "300000)")


def run_similar(args: argparse.Namespace) -> int:
    vectors = WordVectors.load(args.vectors)
    for word in args.words:
        print(f"{word}:")
        for near, score in vectors.most_similar(word, topn=args.topn, restrict_vocab=args.restrict_vocab):
            print(f"  {near}\t{score:.4f}")
    return 0


def run_analogy(args: argparse.Namespace) -> int:
    vectors = WordVectors.load(args.vectors)
    print(f"{args.a} : {args.b} :: {args.c} : ?")
    for word, score in vectors.analogy(args.a, args.b, args.c, topn=args.topn):
        print(f"  {word}\t{score:.4f}")
    return 0


def run_evaluate_vectors(args: argparse.Namespace) -> int:
    """Prints (and returns 0) the analogy accuracy and word-pair correlations of ``--vectors`` as one JSON object."""
    if args.analogies is None and args.pairs is None:
        raise ValueError("--vectors needs --analogies and/or --pairs to evaluate")
    vectors = WordVectors.load(args.vectors)
    report: dict[str, object] = {"vectors": str(args.vectors), "words": len(vectors), "restrict_vocab": args.restrict_vocab}
    if args.analogies is not None:
        result = vectors.evaluate_analogies(args.analogies, restrict_vocab=args.restrict_vocab)
        report["analogies"] = {
            "accuracy": round(result.accuracy, 4), "semantic": round(result.semantic_accuracy, 4),
            "syntactic": round(result.syntactic_accuracy, 4), "evaluated": result.total,
            "skipped": result.skipped, "sections": {s.name: [s.correct, s.total] for s in result.sections},
        }
    if args.pairs is not None:
        pairs = vectors.evaluate_pairs(args.pairs, restrict_vocab=args.restrict_vocab)
        report["pairs"] = {"spearman": round(pairs.spearman, 4), "pearson": round(pairs.pearson, 4),
                           "evaluated": pairs.pairs, "skipped": pairs.skipped}
    print(json.dumps(report, indent=2))
    return 0
