"""The one-kernel decoding attention under launch settings, against PyTorch's attention on the same shapes.

``formers.layers.decode_attention`` runs a program per (row, head) that loops over the cache ``BLOCK_T`` slots at a
time with ``NUM_WARPS`` warps; with fewer than ``PROGRAMS`` (row, head) pairs it splits the cache into parts read by
programs side by side and combines them in a second kernel. This script times its launch (writes the step's key and
value, attends) for each ``block`` x ``num_warps`` pair, in one part and in the chosen parts, on the shapes decoding
meets, each replayed 100 times in a CUDA graph:

- ``gpt2-b1``: GPT-2 124M batch 1 (12 heads of 64), 272 slots (16 + 256), the step at slot 136;
- ``gpt2-b32``: the same, 32 rows;
- ``beam-self``: a beam-4 batch of the ``multi30k-en-de`` model (604 rows, 4 heads of 128), 64 slots, step 20, reading
  through a beam row table (``origin``);

and, for reference on the same shapes, ``F.scaled_dot_product_attention`` (PyTorch's backend choice) over the same
slots with the same bias (the attention alone, without the cache write), plus the cross-attention of ``beam-self``
(27 source positions), which a beam step runs through cuDNN. Each variant's output is checked against the default
launch first.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/decode_attention_variants.py --out results.json``.
``--tiny`` runs small shapes once (with ``TRITON_INTERPRET=1`` on a CPU: a smoke test of this script).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from formers.files import atomic_file
from formers.layers import decode_attention as da

SHAPES = {  # name -> rows, heads, head width, slots, step slot, with a row table, source positions for cross-attention
    "gpt2-b1": (1, 12, 64, 272, 136, False, None),
    "gpt2-b32": (32, 12, 64, 272, 136, False, None),
    "beam-self": (604, 4, 128, 64, 20, True, 27),
}
TINY = {"tiny": (2, 2, 16, 40, 20, True, 7)}
BLOCKS, WARPS = (16, 32, 64, 128), (1, 2, 4, 8)


def inputs(rows: int, heads: int, dh: int, slots: int, slot: int, table: bool, device, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    kv = torch.randn(2, rows, heads, slots, dh, generator=g).to(device, dtype)
    q, k, v = (torch.randn(rows, heads, dh, generator=g).to(device, dtype) for _ in range(3))
    bias = torch.zeros(rows, 1, 1, slots, device=device, dtype=dtype)
    bias[..., slot + 1:] = float("-inf")  # unwritten slots, as a static cache masks them
    origin = torch.randint(0, rows, (rows, slots), generator=g).to(device) if table else None
    return q, k, v, kv, torch.tensor([slot], device=device), bias, origin


def graph_time(fn, device: torch.device, calls: int = 100) -> float:
    """Microseconds per call of ``fn`` replayed ``calls`` times in a CUDA graph (after eager warm-up calls); on a CPU
    one timed eager call."""
    if device.type != "cuda":
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e6
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        graph.replay()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / (5 * calls) * 1e6


def bench_shape(name: str, shape: tuple, device: torch.device, dtype: torch.dtype, tiny: bool) -> dict:
    rows, heads, dh, slots, slot, table, source = shape
    q, k, v, kv, step, bias, origin = inputs(rows, heads, dh, slots, slot, table, device, dtype)
    scale = dh**-0.5

    kernels = (da.decode_attention_kernel, da.combine_parts_kernel)

    def launch(block: int, warps: int, parts: int | None):
        return lambda: da._launch(kernels, q, k, v, kv, step, bias, origin, slots, scale, block, warps, parts)

    reference = launch(da.BLOCK_T, da.NUM_WARPS, 1)().float()
    result = {"rows": rows, "heads": heads, "head_dim": dh, "slots": slots, "step_slot": slot, "row_table": table,
              "kernel_us": {}}
    for parts in (1, None):
        for block in BLOCKS[:2] if tiny else BLOCKS:
            split = da.split_size(rows, heads, slots, block, parts)
            if parts is None and not split:
                continue  # the chosen launch is the one-part one
            for warps in WARPS[2:3] if tiny else WARPS:
                fn = launch(block, warps, parts)
                error = (fn().float() - reference).abs().max().item()
                us = graph_time(fn, device)
                label = f"block {block}, warps {warps}, " + (f"parts of {split}" if split else "one part")
                result["kernel_us"][label] = {"us": us, "max_abs_diff": error}
                print(f"{name:10s} {label:34s}: {us:8.2f} us (diff {error:.2e})", flush=True)
    keys, values = kv[0, :, :, : slot + 1], kv[1, :, :, : slot + 1]  # own rows: the attention alone, for scale
    sdpa = lambda: F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=bias[..., : slot + 1])  # noqa: E731
    result["sdpa_us"] = graph_time(sdpa, device)
    print(f"{name:10s} sdpa (PyTorch's choice): {result['sdpa_us']:8.2f} us", flush=True)
    if source is not None:
        g = torch.Generator().manual_seed(1)
        memory = [torch.randn(rows, heads, source, dh, generator=g).to(device, dtype) for _ in range(2)]
        memory_bias = torch.zeros(rows, 1, 1, source, device=device, dtype=dtype)
        cross = lambda: F.scaled_dot_product_attention(q[:, :, None], *memory, attn_mask=memory_bias)  # noqa: E731
        result["cross_sdpa_us"] = graph_time(cross, device)
        print(f"{name:10s} cross-attention sdpa over {source} positions: {result['cross_sdpa_us']:8.2f} us", flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="small shapes, few variants (a smoke test)")
    p.add_argument("--out", type=Path, default=None, help="JSON results")
    args = p.parse_args(argv)
    if da.UNAVAILABLE is not None:
        raise SystemExit(f"the kernel cannot run here: {da.UNAVAILABLE}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    out = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
           "dtype": str(dtype), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "default": {"block": da.BLOCK_T, "num_warps": da.NUM_WARPS, "programs": da.PROGRAMS}, "shapes": {}}
    for name, shape in (TINY if args.tiny else SHAPES).items():
        out["shapes"][name] = bench_shape(name, shape, device, dtype, args.tiny)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(args.out) as tmp:
            tmp.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
