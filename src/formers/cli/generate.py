"""``formers generate``: continue a prompt with a causal language model, streaming the text as it is generated.

The checkpoint directory (formers or Hugging Face GPT-2) must hold its tokenizer: ``tokenizer.json`` (a
character tokenizer or a byte-level BPE, told apart by content), GPT-2's ``encoder.json`` + ``vocab.bpe``, or
Hugging Face's ``vocab.json`` + ``merges.txt``. Text is printed only once it is final: a byte-level token that
ends inside a UTF-8 character, or text that may be the start of a ``--stop`` string, waits for the next tokens; the
prompt itself is printed with the first generated text, so an error leaves nothing on stdout.

A model reads at most ``max_seq_len`` tokens (its block size). Longer generations slide the window, as nanoGPT's
``sample.py`` does: each new token is conditioned on the last ``max_seq_len`` tokens of prompt + text so far (a
longer prompt keeps its end). ``--no-truncate`` refuses instead.

On CUDA the static-cache, CUDA-graph path runs (``model.generate``'s default; ``--no-fast`` turns it off): text
arrives in bursts of a few tokens and a ``--stop`` string ends generation at the same token as the eager loop.
A single prompt on CUDA also compiles the step (``model.generate``'s default, ``compile=None``): faster tokens after
a one-off compilation that takes longer than a short generation; ``--no-compile`` skips it, ``--compile`` forces it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from formers.data.tokenizers.load import load_tokenizer
from formers.devices import resolve_device
from formers.hub import from_pretrained, resolve_checkpoint_dir
from formers.inference.text_stream import TextStream


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a language model checkpoint, streaming the text")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint, run or Hugging Face GPT-2 directory")
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=200,
                   help="most tokens to generate (default 200); past the model's block size the context slides")
    p.add_argument("--truncate", action=argparse.BooleanOptionalAction, default=True,
                   help="condition each token on the last block-size tokens when prompt + new tokens exceed the "
                        "model's max_seq_len, as nanoGPT (default); --no-truncate refuses instead")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8, as nanoGPT)")
    p.add_argument("--top-k", type=int, default=200, help="sample among the k most likely tokens (default 200)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling probability mass, in (0, 1]")
    p.add_argument("--greedy", action="store_true", help="take the most likely token instead of sampling")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible samples")
    p.add_argument("--stop", nargs="+", default=[], metavar="STR", help="stop when the text contains one of these")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                   help="static KV cache + CUDA graph (default: on CUDA unless the context must slide); text then "
                        "streams in bursts of a few tokens. --no-fast runs the eager loop; same tokens either way")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also compile the decoding step with torch.compile (default: for a single prompt on CUDA): "
                        "faster tokens after a one-off compilation (seconds to tens of seconds, cached on disk by "
                        "inductor); --no-compile skips it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    directory = resolve_checkpoint_dir(args.checkpoint)
    tokenizer = load_tokenizer(directory)
    model = from_pretrained(directory, device=resolve_device(args.device))
    if getattr(model, "family", None) != "gpt":
        raise ValueError(f"{directory} holds a {model.family!r} model; generate needs a causal language model ('gpt')")
    c = model.config
    if tokenizer.vocab_size > c.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary is {c.vocab_size}")
    ids = tokenizer.encode(args.prompt)
    if not ids:
        if c.eos_id is None:
            raise ValueError("--prompt is empty and the model has no end-of-text token to start from")
        ids = [c.eos_id]  # GPT-2 starts documents after <|endoftext|>
    if not args.truncate and len(ids) + args.max_new_tokens > c.max_seq_len:
        raise ValueError(
            f"--prompt ({len(ids)} tokens) + --max-new-tokens {args.max_new_tokens} exceeds the model's max_seq_len="
            f"{c.max_seq_len}; lower --max-new-tokens, or drop --no-truncate to slide the context window"
        )
    stream = TextStream(tokenizer, args.stop, sys.stdout, prefix=args.prompt)

    def on_step(new: list[int]) -> None:
        if new[0] != c.eos_id:
            stream.push(new[0])

    with torch.inference_mode():
        model.generate(
            torch.tensor([ids], device=model.embed.weight.device),
            args.max_new_tokens,
            do_sample=not args.greedy,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            stop=lambda _row: stream.stopped,
            streamer=on_step,
            truncate=args.truncate,
            fast=args.fast,
            compile=args.compile,
        )
    stream.close()
    return 0
