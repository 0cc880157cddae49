"""Peak memory and time of the chunked output projection + cross-entropy against the full logits, in one run.

Runs, each a forward + backward of the loss of ``hidden`` (N, D) through an output weight (V, D), as in training
(float32 master weights and hidden states, GEMMs under bf16 autocast):

- ``full``: ``F.cross_entropy(F.linear(hidden, weight)[:, :C].float(), targets)``, the (N, V) logits and their
  float32 copy in memory (what GPT's loss did eagerly before the chunked loss).
- ``chunked``: :func:`formers.layers.linear_cross_entropy` (GPT's default loss with ``targets=``).
- with ``--compile``: both under ``torch.compile``, plus ``fused_compiled``, formers' :func:`cross_entropy` on the
  full logits (GPT's compiled loss before the chunked one: no float32 copy kept).

Default sizes are GPT-2's at 16 x 1024 tokens (N=16384, D=768, V=50304 rows for C=50257 tokens). Peak memory is
``torch.cuda.max_memory_allocated`` above what the inputs hold; with ``--account`` (and always with ``--tiny``) also
the peak of a live-bytes accounting of every op's outputs (a dispatch mode: slow, but it works on the CPU). Writes one JSON (``--out``).

    python benchmarks/linear_cross_entropy.py --compile --out benchmarks/results/linear_cross_entropy.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode

from formers.layers import cross_entropy, linear_cross_entropy


class PeakBytes(TorchDispatchMode):
    """Live-bytes accounting on any device: the peak total of the op-made storages alive after each op."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                self.live.setdefault(storage.data_ptr(), (StorageWeakRef(storage), storage.nbytes()))
        self.live = {ptr: (ref, size) for ptr, (ref, size) in self.live.items() if not ref.expired()}
        self.peak = max(self.peak, sum(size for _, size in self.live.values()))
        return out


def losses(num_classes: int, smoothing: float, chunk_size: int, compile: bool) -> dict[str, Callable]:
    """The loss functions compared, each ``(hidden, weight, targets) -> scalar``."""

    def full(h, w, t):
        return F.cross_entropy(F.linear(h, w)[:, :num_classes].float(), t, label_smoothing=smoothing)

    def chunked(h, w, t):
        return linear_cross_entropy(h, w, t, num_classes=num_classes, label_smoothing=smoothing, chunk_size=chunk_size)

    def fused(h, w, t):
        return cross_entropy(F.linear(h, w), t, num_classes=num_classes, recompute=True)

    runs = {"full": full, "chunked": chunked}
    if compile:
        runs["full_compiled"] = torch.compile(full)
        runs["chunked_compiled"] = torch.compile(chunked)
        if smoothing == 0:  # formers' cross_entropy has no label smoothing
            runs["fused_compiled"] = torch.compile(fused)
    return runs


def measure(fn: Callable, hidden, weight, targets, dtype, steps: int, warmup: int, eager: bool) -> dict:
    """Mean ms of a forward + backward, the loss, the CUDA peak above the inputs, and (eager) the accounted peak."""
    device = hidden.device
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step():
        hidden.grad = weight.grad = None
        with autocast:
            loss = fn(hidden, weight, targets)
        loss.backward()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    try:
        for _ in range(warmup):
            step()
        sync()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        sync()
        ms = (time.perf_counter() - start) * 1000 / steps
    except torch.OutOfMemoryError:
        return {"oom": True}
    out = {"oom": False, "ms": ms, "loss": float(loss.detach())}
    if device.type == "cuda":
        out["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    if eager:  # a dispatch mode would make a compiled function trace again; slow: the tiny sizes only
        with PeakBytes() as peak:
            step()
        out["accounted_peak_mb"] = peak.peak / 2**20
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="small sizes (a CPU smoke run)")
    parser.add_argument("--n", type=int, default=16 * 1024, help="rows (batch x sequence)")
    parser.add_argument("--d", type=int, default=768, help="hidden width")
    parser.add_argument("--rows", type=int, default=50304, help="output weight rows (aligned vocabulary)")
    parser.add_argument("--num-classes", type=int, default=50257, help="real tokens")
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="GEMMs under autocast or not")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd losses")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--account", action="store_true", help="also the live-bytes accounting (eager runs)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.tiny:
        args.n, args.d, args.rows, args.num_classes, args.chunk_size = 256, 32, 512, 500, 64
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    gen = torch.Generator(device="cpu").manual_seed(0)
    hidden = torch.randn(args.n, args.d, generator=gen).to(device).requires_grad_()
    weight = (0.02 * torch.randn(args.rows, args.d, generator=gen)).to(device).requires_grad_()
    targets = torch.randint(0, args.num_classes, (args.n,), generator=gen).to(device)
    runs = {
        name: measure(fn, hidden, weight, targets, dtype, args.steps, args.warmup, eager="compiled" not in name and (args.account or args.tiny))
        for name, fn in losses(args.num_classes, args.label_smoothing, args.chunk_size, args.compile).items()
    }
    report = {
        "benchmark": "linear_cross_entropy",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "sizes": {k: getattr(args, k) for k in ("n", "d", "rows", "num_classes", "chunk_size", "label_smoothing")},
        "precision": args.precision,
        "runs": runs,
    }
    for name, run in runs.items():
        if run["oom"]:
            print(f"{name:>18}: out of memory")
            continue
        peak = f"peak {run['peak_mb']:8.1f} MB" if "peak_mb" in run else ""
        big = f"accounted peak {run['accounted_peak_mb']:8.2f} MB" if "accounted_peak_mb" in run else ""
        print(f"{name:>18}: {run['ms']:8.2f} ms  loss {run['loss']:.5f}  {peak}  {big}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
