"""GPU consistency check: the same model and batch on CPU vs CUDA, math vs sdpa, fp32 vs bf16 autocast."""

from __future__ import annotations

import torch

import formers

torch.manual_seed(0)
model = formers.create_model("transformer_small", src_vocab_size=1000, tgt_vocab_size=1000, dropout=0.0)
b, s, t = 16, 23, 19
src = torch.randint(4, 1000, (b, s))
tgt = torch.randint(4, 1000, (b, t))
sm = torch.ones(b, s, dtype=torch.bool)
tm = torch.ones(b, t, dtype=torch.bool)
for i in range(b):
    sm[i, s - i :] = False
    tm[i, t - i // 2 :] = False
src[~sm] = 0
tgt[~tm] = 0


def set_backend(m, backend):
    for mod in m.modules():
        if hasattr(mod, "backend"):
            mod.backend = backend


def logits(device, backend, dtype=None, train=True):
    m = model.to(device).train(train)
    set_backend(m, backend)
    with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
        out = m(src.to(device), tgt.to(device), sm.to(device), tm.to(device)).logits.float()
    return out.cpu()[tm]


ref = logits("cpu", "math")
for name, args in {
    "cpu sdpa": ("cpu", "sdpa"),
    "cuda math fp32": ("cuda", "math"),
    "cuda sdpa fp32": ("cuda", "sdpa"),
    "cuda sdpa bf16": ("cuda", "sdpa", torch.bfloat16),
    "cuda math bf16": ("cuda", "math", torch.bfloat16),
    "cuda sdpa bf16 eval": ("cuda", "sdpa", torch.bfloat16, False),
}.items():
    out = logits(*args)
    rel = ((out - ref).norm() / ref.norm()).item()
    print(f"{name:<22} rel err {rel:.2e}  max abs {(out - ref).abs().max().item():.3e}")
