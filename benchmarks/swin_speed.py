"""Swin-T throughput, formers vs ``timm``: bf16 training steps and inference at batch 256, 224x224, one GPU.

Both models are built from the same random weights (timm's ``swin_tiny_patch4_window7_224`` converted with
``formers.from_timm``), run under ``torch.autocast(bfloat16)`` with fp32 weights and AdamW, eager (no compile).
timm is measured as shipped (its Swin attention is the explicit softmax path unless ``TIMM_FUSED_ATTN=2``) and
with its experimental fused attention.

Usage (GPU): ``python benchmarks/swin_speed.py [--batch 256] [--steps 20] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch


def _time(fn, steps: int, warmup: int) -> float:
    """Seconds per call of ``fn`` (CUDA events around ``steps`` calls after ``warmup``)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / steps


def measure(model: torch.nn.Module, logits_of, batch: int, steps: int, warmup: int) -> dict[str, float]:
    """Images/s of a training step (forward, cross-entropy, backward, AdamW) and of inference, bf16 autocast."""
    images = torch.randn(batch, 3, 224, 224, device="cuda")
    labels = torch.randint(0, 1000, (batch,), device="cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def train_step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(logits_of(model(images)), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def infer() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits_of(model(images))

    model.train()
    train = _time(train_step, steps, warmup)
    torch.cuda.reset_peak_memory_stats()
    train_step()
    peak = torch.cuda.max_memory_allocated() / 2**30
    model.eval()
    inference = _time(infer, steps, warmup)
    return {"train_img_s": batch / train, "infer_img_s": batch / inference, "train_peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/swin_speed_h200.json"))
    args = parser.parse_args()

    import timm
    import timm.layers

    import formers

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    name = "swin_tiny_patch4_window7_224"
    ref = timm.create_model(name, pretrained=False, drop_path_rate=0.2).cuda()
    ours = formers.from_timm(name, {k: v.cpu() for k, v in ref.state_dict().items()}, {"drop_path_rate": 0.2}).cuda()

    x = torch.randn(8, 3, 224, 224, device="cuda")
    with torch.no_grad():
        ref.eval(), ours.eval()
        diff = (ref(x) - ours(x).logits).abs().max().item()  # fp32 (TF32 matmuls) agreement check

    results: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "timm_version": timm.__version__,
        "python": platform.python_version(),
        "batch": args.batch,
        "model": name,
        "max_abs_logit_diff_fp32_tf32": diff,
    }
    results["formers"] = measure(ours, lambda out: out.logits, args.batch, args.steps, args.warmup)
    del ours
    results["timm"] = measure(ref, lambda out: out, args.batch, args.steps, args.warmup)
    timm.layers.set_fused_attn(True, experimental=True)
    fused = timm.create_model(name, pretrained=False, drop_path_rate=0.2).cuda()
    results["timm_fused_attn"] = measure(fused, lambda out: out, args.batch, args.steps, args.warmup)
    for key in ("train_img_s", "infer_img_s"):
        best_timm = max(results["timm"][key], results["timm_fused_attn"][key])
        results[f"speedup_{key}"] = results["formers"][key] / best_timm
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
