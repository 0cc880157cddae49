"""Attention kernel choice on the GPU: cuDNN-first against flash-first priority for the shapes the families use.

Forward + backward of ``F.scaled_dot_product_attention`` in bf16 under ``sdpa_kernel(..., set_priority=True)``;
prints milliseconds per call for each order. This measured the rule in ``formers.layers.attention.SDPA_PRIORITY``
(H200, torch 2.x: GPT-2 causal 1.50x and ViT-B 1.56x faster with cuDNN first; Swin's biased windows 0.62x).

``--model`` also profiles one bf16 training step of formers' GPT-2 124M (eager, then compiled) and prints the
attention kernels that ran, to see whether the cuDNN kernel is chosen inside the model (fused-q/k/v strides,
``torch.compile``) as it is for the contiguous tensors above.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/sdpa_kernels.py [--model]``.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

CUDNN_FIRST = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
FLASH_FIRST = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH, SDPBackend.CUDNN_ATTENTION]
CASES = [  # name, (B, H, T, Dh), causal, additive bias
    ("gpt2 B16 T1024", (16, 12, 1024, 64), True, False),
    ("vit-b B256", (256, 12, 197, 64), False, False),
    ("swin-t stage 1 B256", (256 * 64, 3, 49, 32), False, True),
]


def bench(backends: list[SDPBackend], shape: tuple[int, int, int, int], causal: bool, bias: bool) -> float:
    """Milliseconds per forward + backward call."""
    b, h, t, d = shape
    q, k, v = (torch.randn(b, h, t, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    mask = torch.randn(1, h, t, t, device="cuda", dtype=torch.bfloat16) if bias else None
    grad = torch.randn_like(q)

    def step() -> None:
        with sdpa_kernel(backends, set_priority=True):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        out.backward(grad)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 20


def attention_kernels_in_gpt2(compiled: bool) -> Counter:
    """Names of the attention kernels one formers GPT-2 training step launches (counted)."""
    import formers
    from formers.layers import value_checks

    model = formers.create_model("gpt2", dropout=0.0, attn_dropout=0.0).cuda()
    x = torch.randint(0, 50257, (8, 1024), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16), value_checks(False):
            logits = model(x).logits
        F.cross_entropy(logits.float().flatten(0, 1), x.flatten()).backward()

    fn = torch.compile(step) if compiled else step
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    words = ("attn", "attention", "flash", "cudnn", "fmha", "sdpa")
    return Counter(e.name[:90] for e in prof.events() if any(w in e.name.lower() for w in words))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="store_true", help="also list the attention kernels inside GPT-2 steps")
    args = parser.parse_args()
    for name, shape, causal, bias in CASES:
        a, f = bench(CUDNN_FIRST, shape, causal, bias), bench(FLASH_FIRST, shape, causal, bias)
        print(f"{name}: cudnn-first {a:.3f} ms  flash-first {f:.3f} ms  ratio {f / a:.2f}")
    if args.model:
        for compiled in (False, True):
            print(f"GPT-2 training step, {'compiled' if compiled else 'eager'}: attention kernels")
            for kernel, count in attention_kernels_in_gpt2(compiled).most_common(8):
                print(f"  {count:4d}  {kernel}")


if __name__ == "__main__":
    main()
