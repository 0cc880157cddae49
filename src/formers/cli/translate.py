"""``formers translate`` (arguments, a file, or stdin) and ``formers evaluate`` (sacreBLEU on a corpus; with
``--coco``, COCO AP of a detection checkpoint, see :mod:`formers.cli.detect`).

Files and stdin are read as UTF-8 (an undecodable byte is refused, naming its line). A blank line of a file or of
stdin translates to a blank line, so the output stays aligned with the input; stderr says which lines were blank.
An empty sentence given as an argument is refused, as ``formers embed`` refuses one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from formers.cli import detect, word_vectors
from formers.cli.text_input import (
    blank_lines,
    check_arguments,
    read_file_lines,
    read_stdin_lines,
)
from formers.data.corpora import load_corpus_split
from formers.data.tokenizers.load import load_tokenizer
from formers.devices import resolve_device
from formers.hub import checkpoint_family, from_pretrained, resolve_checkpoint_dir
from formers.inference.translate import Translator
from formers.layers import check_int, check_number
from formers.tasks.metrics import corpus_bleu


def _add_decoding_args(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    p.add_argument("--checkpoint", required=checkpoint_required, type=Path, help="checkpoint or run directory")
    p.add_argument("--beam", type=int, default=4, help="beam size (1 = greedy; default 4 as in the paper)")
    p.add_argument("--alpha", type=float, default=0.6, help="length penalty exponent (default 0.6)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                   help="decoder step on a static state replayed as a CUDA graph (default: on CUDA); --no-fast runs "
                        "the eager loop; same translations either way")


def add_translate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("translate", help="translate sentences with a trained checkpoint")
    _add_decoding_args(p)
    p.add_argument("text", nargs="*", help="sentences to translate (default: --file, else one per stdin line)")
    p.add_argument("--file", type=Path, help="file with one source sentence per line")
    p.set_defaults(func=run_translate)


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="sacreBLEU of a translation checkpoint on a corpus split or your own files; "
                                        "COCO AP of a detection checkpoint with --coco; with --vectors, analogy "
                                        "accuracy and word-pair correlation of word vectors")
    _add_decoding_args(p, checkpoint_required=False)
    p.add_argument("--src", type=Path, help="source file, one sentence per line (with --ref)")
    p.add_argument("--ref", type=Path, help="reference file aligned with --src")
    p.add_argument("--corpus", help="built-in corpus: multi30k or bible-en-es (with --split)")
    p.add_argument("--split", default="val", help="corpus split (multi30k: train/val; bible-en-es: train/valid/test)")
    p.add_argument("--src-lang", default=None, help="source language of the corpus (default: the checkpoint's)")
    p.add_argument("--tgt-lang", default=None, help="target language of the corpus (default: the checkpoint's)")
    p.add_argument("--data-dir", default=None, help="local folder holding the corpus files")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N sentences only")
    p.add_argument("--output", type=Path, help="write the hypotheses here")
    p.add_argument("--coco", type=Path, metavar="ANNOTATIONS.json",
                   help="detection: COCO-format annotations to score the checkpoint on (COCO AP)")
    p.add_argument("--images", type=Path, help="detection: folder of the --coco images (default: the JSON's folder)")
    p.add_argument("--batch-size", type=int, default=8, help="detection: images per forward pass (default 8)")
    word_vectors.add_evaluation_args(p)
    p.set_defaults(func=run_evaluate)


def load_translator(args: argparse.Namespace) -> Translator:
    """Model + tokenizer from ``--checkpoint`` on ``--device``."""
    directory = resolve_checkpoint_dir(args.checkpoint)
    if (family := checkpoint_family(directory)) not in ("transformer", "rnn", None):  # before its tokenizer or weights
        command = getattr(args, "command", "translation")
        raise ValueError(f"{directory} holds a {family} model; {command} needs an encoder-decoder "
                         "('transformer' or 'rnn')")
    tokenizer = load_tokenizer(directory)
    model = from_pretrained(directory, device=resolve_device(args.device))
    if not all(callable(getattr(model, name, None)) for name in ("encode", "init_state", "decode")):
        raise ValueError(
            f"{directory} holds a {model.family!r} model; translation needs an encoder-decoder ('transformer', 'rnn')"
        )
    if tokenizer.vocab_size > model.config.src_vocab_size:
        raise ValueError(
            f"tokenizer.json has {tokenizer.vocab_size} tokens but the model's vocabulary is {model.config.src_vocab_size}"
        )
    _check_decoding_args(args, model.config.tgt_vocab_size)
    return Translator(model, tokenizer, beam_size=args.beam, alpha=args.alpha, fast=getattr(args, "fast", None))


def _check_decoding_args(args: argparse.Namespace, vocab_size: int | None = None) -> None:
    """--beam and --alpha: before the model loads, then the beam against the model's vocabulary once it has."""
    check_int(args.beam, "--beam", 1, vocab_size)
    check_number(args.alpha, "--alpha", minimum=0)


def run_translate(args: argparse.Namespace) -> int:
    _check_decoding_args(args)
    source = None
    if args.text:
        check_arguments(args.text)
        for i, text in enumerate(args.text):
            if not text.strip():
                raise ValueError(f"source sentence {i} is empty; give at least one word to translate")
        texts = args.text
    elif args.file:
        texts, source = read_file_lines(args.file, "--file"), f"--file {str(args.file)!r}"
    else:
        texts, source = read_stdin_lines(), "stdin"
    if not texts:
        raise ValueError("nothing to translate: give sentences as arguments, --file, or on stdin")
    translator = load_translator(args)
    with torch.inference_mode():
        for line in translator.translate(texts):
            print(line, flush=True)
    blank = blank_lines(texts) if source else []
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        print(f"formers translate: {len(blank)} blank line(s) of {source} translated to blank lines (line {shown})",
              file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    if args.coco is not None:
        return detect.run_evaluate(args)
    if args.images is not None:
        raise ValueError("--images goes with --coco (detection evaluation)")
    if args.vectors is not None:
        return word_vectors.run_evaluate_vectors(args)
    if args.checkpoint is None:
        raise ValueError("evaluate needs --checkpoint (a translation model) or --vectors (word vectors)")
    if (args.src is None) != (args.ref is None):
        raise ValueError("--src and --ref go together")
    if args.src is None and args.corpus is None:
        raise ValueError("give either --src/--ref files or --corpus with --split")
    _check_decoding_args(args)
    if args.limit is not None:
        check_int(args.limit, "--limit", minimum=1)
    sources = refs = None
    if args.src is not None:
        sources, refs = read_file_lines(args.src, "--src"), read_file_lines(args.ref, "--ref")
        if len(sources) != len(refs):
            raise ValueError(f"--src has {len(sources)} lines but --ref has {len(refs)}")
    translator = load_translator(args)
    if sources is None:
        meta = translator.model.config.tokenizer
        src_lang = args.src_lang or meta.get("src_lang")
        tgt_lang = args.tgt_lang or meta.get("tgt_lang")
        try:
            sources, refs = load_corpus_split(args.corpus, args.split, src_lang, tgt_lang, args.data_dir)
        except ValueError as error:  # name the options behind the corpus loader's arguments
            raise ValueError(f"--corpus {args.corpus} --split {args.split}, languages {src_lang} -> {tgt_lang} "
                             f"(--src-lang / --tgt-lang, else the checkpoint's): {error}") from error
    if args.limit is not None:
        sources, refs = sources[: args.limit], refs[: args.limit]
    start = time.perf_counter()
    hyps = translator.translate(sources)
    seconds = time.perf_counter() - start
    if args.output:
        args.output.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    bleu = corpus_bleu(hyps, refs)
    print(f"sacreBLEU {bleu:.2f} on {len(sources)} sentences (beam {args.beam}, alpha {args.alpha}) in {seconds:.1f}s")
    return 0
