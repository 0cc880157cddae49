"""Attention kernel choice on the GPU: cuDNN-first against flash-first priority for the shapes the families use.

Forward + backward of ``F.scaled_dot_product_attention`` in bf16 under ``sdpa_kernel(..., set_priority=True)``;
prints milliseconds per call for each order. This measured the rule in ``formers.layers.attention.SDPA_PRIORITY``
(H200, torch 2.x: GPT-2 causal 1.50x and ViT-B 1.56x faster with cuDNN first; Swin's biased windows 0.62x).

Run on a CUDA machine: ``python benchmarks/sdpa_kernels.py``.
"""

from __future__ import annotations

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


def main() -> None:
    for name, shape, causal, bias in CASES:
        a, f = bench(CUDNN_FIRST, shape, causal, bias), bench(FLASH_FIRST, shape, causal, bias)
        print(f"{name}: cudnn-first {a:.3f} ms  flash-first {f:.3f} ms  ratio {f / a:.2f}")


if __name__ == "__main__":
    main()
