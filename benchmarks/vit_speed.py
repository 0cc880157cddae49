"""ViT-B/16 speed, formers against timm in one run: bf16 training and inference throughput at batch 256, 224x224.

Both models hold the SAME weights (timm's random init converted with ``formers.interop.vit``), dropout and
stochastic depth off, and see the same random batches. Training: bf16 autocast, cross-entropy on float32
logits outside the model, fused AdamW; a step is forward, backward, optimizer step and zeroing the gradients.
Inference: bf16 autocast under ``torch.inference_mode``. Images per second come from CUDA events around
``--steps`` steps after ``--warmup`` steps; the two libraries are timed alternately, ``--rounds`` times each, and
the best round is kept. formers' host-side NaN check reads the device, so it is switched off with
``value_checks(False)`` as the training tasks do (the ``checks on`` row measures it). ``--compile`` adds
``torch.compile`` of both models.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/vit_speed.py`` (``--smoke``: a tiny CPU run of the same
code; ``--model``: any ``vit_*`` name registered in both libraries). Writes
``benchmarks/results/vit_speed_<gpu>.json`` (and ``$OUT/`` when set) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from formers.interop.vit import load_timm_vit
from formers.layers import value_checks

RESULTS = Path(__file__).resolve().parent / "results"


def build_pair(name: str, device: torch.device, smoke: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """timm's model (random init, no dropout / drop path) and the formers ViT holding the same weights."""
    import timm

    size = dict(embed_dim=64, depth=2, num_heads=2, img_size=32, patch_size=8, num_classes=10) if smoke else {}
    ref = timm.create_model(name, pretrained=False, drop_rate=0.0, drop_path_rate=0.0, **size)
    ours = load_timm_vit(name, ref.state_dict(), {"num_heads": 2} if smoke else {})
    return ref.to(device).train(), ours.to(device).train()


def timed(step: Callable[[], None], warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per step (CUDA events on GPU, wall clock on CPU)."""
    import time

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000 / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def make_steps(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, is_formers: bool):
    """(train_step, infer_step) closures for one model."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=images.device.type == "cuda")
    amp = torch.autocast(images.device.type, dtype=torch.bfloat16)

    def logits(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out.logits if is_formers else out

    def train_step() -> None:
        with amp:
            out = logits(images)
        loss = F.cross_entropy(out.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def infer_step() -> None:
        with torch.inference_mode(), amp:
            logits(images)

    return train_step, infer_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of both models")
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU: checks the script runs")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if args.smoke:
        args.batch_size, args.warmup, args.steps, args.rounds = 4, 1, 2, 1
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    ref, ours = build_pair(args.model, device, args.smoke)
    size = ours.config.image_size
    images = torch.randn(args.batch_size, ours.config.in_channels, size, size, device=device)
    labels = torch.randint(0, ours.config.num_classes, (args.batch_size,), device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        ref.eval(), ours.eval()
        diff = (ours(images[:8]).logits.float() - ref(images[:8]).float()).abs().max().item()
        ref.train(), ours.train()

    variants = {"timm": (ref, False), "formers": (ours, True)}
    if args.compile:
        variants["timm compiled"] = (torch.compile(ref), False)
        variants["formers compiled"] = (torch.compile(ours), True)
    steps = {name: make_steps(m, images, labels, is_formers) for name, (m, is_formers) in variants.items()}
    best: dict[str, dict[str, float]] = {name: {"train": 0.0, "infer": 0.0} for name in steps}
    with value_checks(False):
        for _ in range(args.rounds):
            for name, (train_step, infer_step) in steps.items():
                for kind, step in (("train", train_step), ("infer", infer_step)):
                    ips = args.batch_size / timed(step, args.warmup, args.steps, device)
                    best[name][kind] = max(best[name][kind], ips)
    train_step, infer_step = steps["formers"]
    checks_on = {kind: args.batch_size / timed(step, args.warmup, args.steps, device)
                 for kind, step in (("train", train_step), ("infer", infer_step))}

    gpu = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    result = {
        "model": args.model,
        "device": gpu,
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "image_size": size,
        "dtype": "bf16 autocast",
        "max_abs_logit_diff_bf16": diff,
        "images_per_second": best,
        "formers_with_value_checks": checks_on,
        "speedup_vs_timm": {
            kind: best["formers"][kind] / best["timm"][kind] for kind in ("train", "infer")
        },
    }
    if args.compile:
        result["compiled_speedup_vs_timm_compiled"] = {
            kind: best["formers compiled"][kind] / best["timm compiled"][kind] for kind in ("train", "infer")
        }
    print(f"{args.model}, batch {args.batch_size}, {size}x{size}, bf16, {gpu}")
    print(f"{'':18s} {'train img/s':>12s} {'infer img/s':>12s}")
    for name, r in best.items():
        print(f"{name:18s} {r['train']:12.0f} {r['infer']:12.0f}")
    print(f"{'formers (checks)':18s} {checks_on['train']:12.0f} {checks_on['infer']:12.0f}")
    print(json.dumps(result, indent=2))
    if not args.smoke:
        tag = gpu.lower().replace("nvidia ", "").split()[0] if device.type == "cuda" else "cpu"
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"vit_speed_{tag}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "vit_speed.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
