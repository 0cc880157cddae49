"""Where a batch-1 decoding step's time goes, and which way of compiling it is fastest.

GPT-2 124M (random weights, bf16 on CUDA), a 16-token prompt, 256 new greedy tokens through ``model.generate``,
once per variant of the step, in one process:

- ``uncompiled``: the captured eager step (``compile=False``);
- ``compiled``: the default for one row on CUDA (``compile=None``: inductor with the one-row matrix-vector rewrite
  and coordinate-descent tuning, :mod:`formers.generation.step_compile`);
- ``compiled, math attention``: the same with every attention module on the ``math`` backend, which inductor fuses
  itself instead of calling cuDNN;
- ``compiled, autotuned pointwise``: the same with inductor's ``max_autotune_pointwise`` (every reduction
  configuration benchmarked);
- ``compiled, realize 8``: the same with inductor's ``realize_opcount_threshold`` at 8 instead of 30, so that a
  pointwise result such as the MLP's GELU is computed once and stored rather than recomputed inside each program of
  the next matrix-vector product (the H100 profile's slowest kernel: the down projection with the GELU inlined);
- ``compiled, one part``: the default with the decoding attention kernel reading each (row, head)'s cache in one
  program (``decode_attention.PROGRAMS = 0``) instead of in parts side by side (12 programs for batch 1 otherwise);
- ``compiled, activations recomputed``: the default without ``step_compile.STORE_ACTIVATIONS``: each MLP's GELU
  inlined into (and recomputed by every program of) the down projection's reduction instead of stored once;
- ``compiled, parts combined in-kernel``: the default with ``decode_attention.FUSED_COMBINE``: the attention's
  parts combined by the last part to finish instead of by a second kernel (12 kernels fewer per token);
- ``compiled, norms unfused``: the default without ``step_compile.FUSE_NORMS``: each layer norm's mean and
  variance in a kernel of their own before the matrix-vector product that reads the norm;
- ``compiled, output layer's norm apart``: the default with ``step_compile.FUSE_NORMS_MAX_OUTPUTS = 16384``: the
  output layer's 50,304-row product keeps its final norm in a kernel of its own;
- ``compiled, prefill eager``: the default with the prompt pass run eagerly (``static_lm.PREFILL_GRAPH_TOKENS = 0``)
  instead of replayed from a graph of its own;
- ``compiled, 16 steps per graph``: the default with ``static_lm.BURST = 16``: one graph launch per 16 tokens
  instead of one per token;
- ``compiled, both``: the two above together;
- ``compiled, whole step per kind``: the default with ``static_lm.SHARED_BODY = False``: each kind of step compiles
  the whole step, the model included (the code before 2026-12-08), instead of the model's part once per decoder
  and each kind its token choice.

For each: tokens/s (median of ``--repeats`` calls after the first, which compiles and captures), the first call's
time, and the profiler's kernels and device microseconds per token with the heaviest kernels.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/generate_step_variants.py --out results.json``;
``--device cpu --tiny`` runs the uncompiled variant on a tiny model (a smoke test of this script).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_speed import decode_run_record, gpt2_pair, kernel_profile, save_json, sync  # noqa: E402

from formers.generation.static_lm import clear_decoders  # noqa: E402

VARIANTS = {  # name -> (compile, attention backend, inductor settings, formers module settings)
    "uncompiled": (False, "sdpa", {}, {}),
    "compiled": (None, "sdpa", {}, {}),
    "compiled, math attention": (None, "math", {}, {}),
    "compiled, autotuned pointwise": (None, "sdpa", {"max_autotune_pointwise": True}, {}),
    "compiled, realize 8": (None, "sdpa", {"realize_opcount_threshold": 8}, {}),
    # inductor's graph cache off: these settings act while tracing, which the cache key misses
    "compiled, one part": (None, "sdpa", {"fx_graph_cache": False}, {"decode_attention.PROGRAMS": 0}),
    "compiled, activations recomputed": (None, "sdpa", {"fx_graph_cache": False},
                                         {"step_compile.STORE_ACTIVATIONS": False}),
    "compiled, parts combined in-kernel": (None, "sdpa", {"fx_graph_cache": False},
                                           {"decode_attention.FUSED_COMBINE": True}),
    "compiled, norms unfused": (None, "sdpa", {"fx_graph_cache": False}, {"step_compile.FUSE_NORMS": False}),
    "compiled, prefill eager": (None, "sdpa", {}, {"static_lm.PREFILL_GRAPH_TOKENS": 0}),
    "compiled, output layer's norm apart": (None, "sdpa", {"fx_graph_cache": False},
                                            {"step_compile.FUSE_NORMS_MAX_OUTPUTS": 16384}),
    "compiled, 16 steps per graph": (None, "sdpa", {}, {"static_lm.BURST": 16}),
    "compiled, both": (None, "sdpa", {"fx_graph_cache": False},
                       {"decode_attention.FUSED_COMBINE": True, "static_lm.BURST": 16}),
    "compiled, whole step per kind": (None, "sdpa", {}, {"static_lm.SHARED_BODY": False}),
}


def run_variant(
    model, device: torch.device, new: int, repeats: int, compile, backend: str, settings: dict, kernel: dict
) -> dict:
    import torch._inductor.config as inductor_config

    from formers.generation import static_lm, step_compile
    from formers.layers import decode_attention

    modules = {"decode_attention": decode_attention, "step_compile": step_compile, "static_lm": static_lm}
    kernel = {(modules[key.split(".")[0]], key.split(".")[1]): value for key, value in kernel.items()}

    for module in model.modules():
        if hasattr(module, "backend"):
            module.backend = backend
    clear_decoders(model)
    torch._dynamo.reset()
    saved = {name: getattr(inductor_config, name) for name in settings}
    saved_kernel = {(module, name): getattr(module, name) for module, name in kernel}
    for name, value in settings.items():
        setattr(inductor_config, name, value)
    for (module, name), value in kernel.items():
        setattr(module, name, value)
    prompt = torch.randint(0, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(2))
    prompt = prompt.to(device)
    sync(device)
    start = time.perf_counter()
    model.generate(prompt, new, compile=compile)
    sync(device)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        ids = model.generate(prompt, new, compile=compile)
        sync(device)
        times.append(time.perf_counter() - start)
    row = {"tokens_per_s": ids.numel() / statistics.median(times), "first_s": first, "times_s": times}
    if device.type == "cuda":
        generate = model.generate
        model.generate = lambda p, n, **kw: generate(p, n, compile=compile, **kw)
        try:
            row["profile"] = kernel_profile(model, device, new, top=14)
        finally:
            model.generate = generate
    for name, value in saved.items():
        setattr(inductor_config, name, value)
    for (module, name), value in saved_kernel.items():
        setattr(module, name, value)
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="a tiny random model (CPU smoke test)")
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                   help="default: all on CUDA, the uncompiled one elsewhere")
    p.add_argument("--out", type=Path, required=True, help="JSON results")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    names = args.variants or (list(VARIANTS) if device.type == "cuda" else ["uncompiled"])
    model, _ = gpt2_pair(device, args.tiny, torch.bfloat16 if device.type == "cuda" else torch.float32)
    out = decode_run_record(device, args.new_tokens, variants={})
    for name in names:
        row = out["variants"][name] = run_variant(model, device, args.new_tokens, args.repeats, *VARIANTS[name])
        profile = row.get("profile", {})
        print(f"{name:30s} {row['tokens_per_s']:8.0f} tokens/s  first call {row['first_s']:5.1f} s  "
              f"kernels/token {profile.get('kernels_per_token', float('nan')):6.1f}  "
              f"device us/token {profile.get('device_us_per_token', float('nan')):6.1f}", flush=True)
    return save_json(out, args.out)


if __name__ == "__main__":
    main()
