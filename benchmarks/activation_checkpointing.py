"""Peak memory and training throughput of a GPT with and without activation checkpointing, on one device.

``train.activation_checkpointing: true`` (:func:`formers.training.distributed.checkpoint_blocks`) makes every
Transformer block recompute its activations in the backward pass: the question is how much memory that saves and
what it costs in tokens/s, and whether a model that does not fit for training at a batch (``gpt2_xl``, 1.5B
parameters, AdamW, bf16 autocast) trains with it. Each mode builds the model afresh, takes ``--warmup`` untimed and
``--steps`` timed optimizer steps on random token windows, and records the peak memory (CUDA: the allocator's peak;
CPU: the process's peak resident size, which only grows, so the CPU figures are a smoke test, not a measurement).
A mode that runs out of memory is recorded as ``"oom": true``.

Usage on a GPU: ``PYTHONPATH=src python benchmarks/activation_checkpointing.py --model gpt2_xl --batch-size 16``
(writes ``$OUT/activation_checkpointing_<model>.json`` or ``--out``). On the CPU, to check the script:
``--model gpt_mini --device cpu --batch-size 2 --seq-len 32 --steps 2 --warmup 1 --set embed_dim=32 --set num_layers=2``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

import formers
from formers.config import parse_set_args
from formers.training.distributed import checkpoint_blocks
from formers.training.optim import build_optimizer


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(model_name: str, overrides: dict, device: torch.device, batch_size: int, seq_len: int, steps: int,
            warmup: int, precision: str, checkpointing: bool) -> dict:
    """One mode: fresh model and AdamW, ``warmup`` + ``steps`` optimizer steps; tokens/s over the timed steps."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    result: dict = {"activation_checkpointing": checkpointing}
    model = optimizer = None
    try:
        torch.manual_seed(0)
        model = formers.create_model(model_name, max_seq_len=seq_len, **overrides).to(device)
        result["parameters_m"] = sum(p.numel() for p in model.parameters()) / 1e6
        if checkpointing:
            result["blocks"] = checkpoint_blocks(model)
        optimizer = build_optimizer(model)
        vocab = model.config.vocab_size
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        ids = torch.randint(0, vocab, (batch_size, seq_len), device=device)
        start = 0.0
        for step in range(warmup + steps):
            if step == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model(ids, targets=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        result.update(oom=False, loss=float(loss.detach()), step_s=elapsed / steps,
                      tokens_per_s=batch_size * seq_len * steps / elapsed, peak_memory_mb=_peak_mb(device))
    except torch.OutOfMemoryError as e:
        result.update(oom=True, error=str(e).splitlines()[0], peak_memory_mb=_peak_mb(device))
    finally:
        del model, optimizer
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2_xl", help="a registered GPT variant (default gpt2_xl)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="model config overrides, e.g. --set num_layers=2 (tiny CPU checks)")
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--batch-size", type=int, default=48,
                        help="48 x 1024: without checkpointing gpt2_xl needs about 170 GB (an H200 holds 139), with it about 45")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--modes", default="off,on", help="which modes, in order: off,on")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default $OUT/activation_checkpointing_<model>.json)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available (use --device cpu for a tiny check)")
    overrides = parse_set_args(args.overrides)
    modes = [m.strip() for m in args.modes.split(",")]
    if not modes or any(m not in ("off", "on") for m in modes):
        parser.error(f"--modes must list off and/or on, got {args.modes!r}")
    runs = [measure(args.model, overrides, device, args.batch_size, args.seq_len, args.steps, args.warmup,
                    args.precision, mode == "on") for mode in modes]
    report = {
        "model": args.model, "overrides": overrides, "device": torch.cuda.get_device_name(device)
        if device.type == "cuda" else "cpu", "batch_size": args.batch_size, "seq_len": args.seq_len,
        "precision": args.precision, "optimizer": "AdamW (formers.training.optim.build_optimizer)",
        "torch": torch.__version__, "runs": runs,
    }
    for run in runs:
        mode = "with" if run["activation_checkpointing"] else "without"
        if run["oom"]:
            print(f"{mode:>7} activation checkpointing: out of memory (peak {run['peak_memory_mb']:,.0f} MiB)")
        else:
            print(f"{mode:>7} activation checkpointing: peak {run['peak_memory_mb']:,.0f} MiB, "
                  f"{run['tokens_per_s']:,.0f} tokens/s, {run['step_s'] * 1e3:.0f} ms/step")
    out = args.out or Path(os.environ.get("OUT", ".")) / f"activation_checkpointing_{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
