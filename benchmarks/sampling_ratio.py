"""Sampling against greedy decoding through ``model.generate``, timed alternately in one process.

GPT-2 124M (random weights, bf16 on CUDA), a 16-token prompt, 256 new tokens, batch 1. Issue 15 asks that top-k /
top-p sampling run within 10% of greedy; one benchmark run times each path a few times in a row, so a slow phase of
the machine lands on whichever path ran then. Here the calls alternate (greedy, sampling, the other sampling,
greedy, ...) for ``--rounds`` rounds, and each path's median is compared:

- ``greedy``: ``model.generate(prompt, 256)``;
- ``sampling``: ``do_sample=True, top_k=50, top_p=0.9, seed=0``, the default path;
- ``sampling, one topk`` or ``sampling, split topk``: the same on a second copy of the model whose graphs were
  captured with the other way of finding the top 50 (:func:`formers.generation.sampling.top_candidates`): one
  ``torch.topk`` over the 50,257 logits (``sampling.SPLIT_TOPK_SLICES = None``) or two rounds over 64 slices.

Both sampling paths should draw the same tokens (recorded; the top 50 are the same unless logits tie).

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/sampling_ratio.py --out results.json``; ``--device cpu
--tiny`` runs it on a tiny model (a smoke test of this script).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_speed import gpt2_pair, sync  # noqa: E402

from formers.files import atomic_file  # noqa: E402
from formers.generation import sampling  # noqa: E402

SAMPLING = dict(do_sample=True, top_k=50, top_p=0.9, seed=0)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="a tiny random model (CPU smoke test)")
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--out", type=Path, required=True, help="JSON results")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, _ = gpt2_pair(device, args.tiny, torch.bfloat16 if device.type == "cuda" else torch.float32)
    copy, _ = gpt2_pair(device, args.tiny, model.output.weight.dtype)
    copy.load_state_dict(model.state_dict())
    default_slices = sampling.SPLIT_TOPK_SLICES
    other = ("sampling, split topk", 64) if default_slices is None else ("sampling, one topk", None)
    paths = {  # name -> (model, generate options, sampling.SPLIT_TOPK_SLICES while its graphs are captured)
        "greedy": (model, {}, default_slices),
        "sampling": (model, SAMPLING, default_slices),
        other[0]: (copy, SAMPLING, other[1]),
    }
    prompt = torch.randint(0, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(2))
    prompt = prompt.to(device)
    out = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "new_tokens": args.new_tokens, "sampling": SAMPLING, "split_topk_slices": default_slices, "paths": {},
    }
    tokens = {}
    try:
        for name, (net, options, slices) in paths.items():  # the first call compiles and captures
            sampling.SPLIT_TOPK_SLICES = slices
            sync(device)
            start = time.perf_counter()
            tokens[name] = net.generate(prompt, args.new_tokens, **options)[0].tolist()
            sync(device)
            out["paths"][name] = {"first_s": time.perf_counter() - start, "times_s": []}
    finally:
        sampling.SPLIT_TOPK_SLICES = default_slices  # replays read no setting: the graphs keep their capture's
    out["same_tokens"] = tokens["sampling"] == tokens[other[0]]
    for _ in range(args.rounds):
        for name, (net, options, _) in paths.items():
            sync(device)
            start = time.perf_counter()
            net.generate(prompt, args.new_tokens, **options)
            sync(device)
            out["paths"][name]["times_s"].append(time.perf_counter() - start)
    greedy = statistics.median(out["paths"]["greedy"]["times_s"])
    for name, row in out["paths"].items():
        median = statistics.median(row["times_s"])
        row["tokens_per_s"] = args.new_tokens / median
        row["of_greedy"] = greedy / median
        print(f"{name:20s} {row['tokens_per_s']:8.0f} tokens/s  {row['of_greedy']:.3f} of greedy  "
              f"first call {row['first_s']:5.1f} s", flush=True)
    print(f"sampling paths draw the same tokens: {out['same_tokens']}")
    with atomic_file(args.out) as tmp:
        tmp.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
