"""The sdpa path on CUDA (cuDNN first, then flash / memory-efficient kernels) against the math path, values and
gradients, for the shapes the families use: causal LM, ViT-like unmasked, Swin-like biased, padded masks."""

from __future__ import annotations

import pytest
import torch

from formers.layers import scaled_dot_product_attention

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CASES = {
    "gpt_causal": ((2, 12, 1024, 64), {"is_causal": True}),
    "vit_plain": ((8, 12, 197, 64), {}),
    "swin_bias": ((64, 3, 49, 32), {"bias": True}),
    "bert_padding_mask": ((4, 8, 100, 64), {"mask": True}),
    "cached_causal": ((2, 4, 7, 64), {"is_causal": True, "tk": 19}),
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", sorted(CASES))
def test_sdpa_kernels_match_the_math_path_on_cuda(case, dtype):
    torch.manual_seed(0)
    (b, h, t, d), opts = CASES[case]
    tk = opts.get("tk", t)
    q = torch.randn(b, h, t, d, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(b, h, tk, d, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(b, h, tk, d, device="cuda", dtype=dtype, requires_grad=True)
    kwargs = {"is_causal": opts.get("is_causal", False)}
    if opts.get("bias"):
        kwargs["attn_bias"] = torch.randn(1, h, t, tk, device="cuda", dtype=dtype)
    if opts.get("mask"):
        lengths = torch.randint(1, tk + 1, (b,), device="cuda")
        kwargs["attn_mask"] = (torch.arange(tk, device="cuda")[None] < lengths[:, None])[:, None, None, :]
    grad = torch.randn(b, h, t, d, device="cuda", dtype=dtype)
    outs = {}
    for backend in ("sdpa", "math"):
        for x in (q, k, v):
            x.grad = None
        if backend == "math":  # float32 reference
            qf, kf, vf = (x.detach().float().requires_grad_() for x in (q, k, v))
            extra = {n: (a.float() if a.is_floating_point() else a) for n, a in kwargs.items() if isinstance(a, torch.Tensor)}
            out = scaled_dot_product_attention(qf, kf, vf, backend="math", is_causal=kwargs["is_causal"], **extra)
            out.backward(grad.float())
            outs[backend] = [out] + [x.grad for x in (qf, kf, vf)]
        else:
            out = scaled_dot_product_attention(q, k, v, backend="sdpa", **kwargs)
            out.backward(grad)
            outs[backend] = [out] + [x.grad for x in (q, k, v)]
    for name, fast, ref in zip(("out", "dq", "dk", "dv"), outs["sdpa"], outs["math"]):
        scale = ref.abs().max().item()
        err = (fast.float() - ref).abs().max().item()
        assert err <= 0.02 * max(scale, 1.0), f"{case} {dtype} {name}: max error {err:.3g} vs scale {scale:.3g}"
