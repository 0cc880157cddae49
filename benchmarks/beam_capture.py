"""Where beam-4 translation's time goes besides the decoding: graph captures per batch shape, and batch size.

``beam_search`` on CUDA captures one CUDA graph per (rows, source length, capacity) after ``WARMUP_STEPS`` eager
steps, plus one graph per attention window, and keeps ``CACHED_SHAPES`` of them per model. Multi30k's 1,014
validation sentences make about six batches of 4,096 source tokens, each a new shape, so a single pass pays about
six captures. This script times the ``generate_speed.py`` translation workload (the ``multi30k-en-de`` model size,
random weights, 40 new tokens, bf16) under variants of those settings, each as a user's ``Translator.translate``
call would run it (decoders cleared after every pass) unless it says "steady" (graphs kept across passes), and
Hugging Face's ``MarianMTModel`` on the same batches:

- captures without (the default) and with ``torch.cuda.graph``'s device synchronisation and cache emptying;
- warm-up steps before a capture: 1 (the default), 0;
- (measured once, then dropped: every shape's capture in one shared graph memory pool, no change on an H200,
  ``beam_capture_h200.json``);
- attention backends: PyTorch's choice (cuDNN first for a masked attention on an H100; it builds a plan per new
  shape) or flash/efficient/math only;
- source tokens per batch: 4,096 (``Translator``'s default), 16,384 (fewer, larger batches: fewer captures);
- every shape kept (steady state: replays only).

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/beam_capture.py`` (``--tiny``: tiny models on the CPU,
where nothing is captured; a smoke test). Prints a table and writes ``$OUT/beam_capture.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_speed import sync, translation_batches, translation_pair  # noqa: E402

from formers.generation import seq2seq  # noqa: E402
from formers.generation.static_lm import clear_decoders  # noqa: E402

VARIANTS = [  # label, source tokens per batch, warm-up steps, cached shapes, keep graphs across passes,
    # attention backends allowed (None: PyTorch's choice, cuDNN's first on an H100, which plans per new shape),
    # light captures (seq2seq.LIGHT_CAPTURE; False: torch.cuda.graph, which synchronises and empties the cache)
    ("default (as a translate call)", 4096, 1, 2, False, None, True),
    ("torch.cuda.graph captures", 4096, 1, 2, False, None, False),
    ("no cuDNN attention", 4096, 1, 2, False, "no-cudnn", True),
    ("warm-up 0", 4096, 0, 2, False, None, True),
    ("16k tokens", 16384, 1, 2, False, None, True),
    ("steady", 4096, 1, 16, True, None, True),
    ("no cuDNN attention, steady", 4096, 1, 16, True, "no-cudnn", True),
    ("16k tokens, steady", 16384, 1, 16, True, None, True),
]


def backends(choice: str | None):
    """A context allowing the SDPA backends of ``choice`` (None: PyTorch's default order)."""
    if choice is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny models on the CPU (a smoke test)")
    p.add_argument("--sentences", type=int, default=None, help="sentences (default 1014; --tiny 12)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    sentences = args.sentences or (12 if args.tiny else 1014)
    new_tokens = 8 if args.tiny else 40
    torch.manual_seed(0)
    ours, hf = translation_pair(device, args.tiny, torch.float32 if device.type == "cpu" else torch.bfloat16)
    defaults = seq2seq._StaticStep.WARMUP_STEPS, seq2seq.CACHED_SHAPES, seq2seq.LIGHT_CAPTURE
    rows = []
    try:
        with torch.inference_mode():
            for label, max_tokens, warmup, cached, steady, attention, light in VARIANTS:
                seq2seq._StaticStep.WARMUP_STEPS, seq2seq.CACHED_SHAPES, seq2seq.LIGHT_CAPTURE = warmup, cached, light
                batches = translation_batches(ours.config, sentences, max_tokens, device)

                def run(batches=batches, steady=steady, attention=attention):
                    with backends(attention):
                        out = [seq2seq.beam_search(ours, s, m, beam_size=4, alpha=0.6, max_new_tokens=new_tokens)
                               for s, m in batches]
                    if not steady:
                        clear_decoders(ours)
                    return out

                seconds = timed(run, device, args.repeats)
                clear_decoders(ours)
                rows.append({"variant": label, "library": "formers", "max_tokens": max_tokens, "batches": len(batches),
                             "warmup_steps": warmup, "cached_shapes": cached,
                             "attention": attention or "default", "light_capture": light,
                             "sentences_per_s": sentences / seconds})
            for max_tokens in sorted({v[1] for v in VARIANTS}):
                batches = translation_batches(ours.config, sentences, max_tokens, device)
                seconds = timed(lambda batches=batches: [
                    hf.generate(input_ids=s, attention_mask=m.long(), num_beams=4, length_penalty=0.6,
                                max_new_tokens=new_tokens, early_stopping=True, do_sample=False)
                    for s, m in batches], device, max(1, args.repeats - 1))
                rows.append({"variant": "Hugging Face Marian generate", "library": "transformers",
                             "max_tokens": max_tokens, "batches": len(batches), "sentences_per_s": sentences / seconds})
    finally:
        seq2seq._StaticStep.WARMUP_STEPS, seq2seq.CACHED_SHAPES, seq2seq.LIGHT_CAPTURE = defaults
    marian = {r["max_tokens"]: r["sentences_per_s"] for r in rows if r["library"] == "transformers"}
    print(f"beam-4 translation of {sentences} sentences, {new_tokens} new tokens, "
          f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    print(f"{'variant':34s} {'tokens':>7s} {'batches':>7s} {'sent/s':>10s} {'/ Marian':>9s}")
    for r in rows:
        r["vs_marian_same_batches"] = r["sentences_per_s"] / marian[r["max_tokens"]]
        print(f"{r['variant']:34s} {r['max_tokens']:7d} {r['batches']:7d} {r['sentences_per_s']:10.1f} "
              f"{r['vs_marian_same_batches']:8.2f}x")
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "sentences": sentences, "new_tokens": new_tokens, "rows": rows}
    path = args.out or (Path(os.environ["OUT"]) / "beam_capture.json" if os.environ.get("OUT") else None)
    if path is not None:
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
