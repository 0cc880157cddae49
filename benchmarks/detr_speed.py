"""DETR-R50 training speed, formers against Hugging Face ``DetrForObjectDetection`` in one run: 800x800, batch 8, bf16.

Both models hold the SAME weights (Hugging Face's random init with a ResNet-50 backbone, ``use_timm_backbone=False``,
converted with ``formers.interop.detr``), 91 labels, 100 queries, auxiliary losses on, dropout as configured (0.1),
and see the same images, padding masks and targets (random boxes, ``--boxes`` per image on average, COCO's ~7).
Both freeze the backbone's stem and first stage as DETR does (Hugging Face always; formers through
``freeze_backbone``). A training step is: bf16-autocast forward, the loss (Hugging Face: its own
``ForObjectDetectionLoss`` through ``labels=``; formers: ``DetectionTask`` / ``SetCriterion``, Hungarian matching of
all decoder layers in one transfer), backward, fused AdamW step, zeroing the gradients. Seconds per step come from
CUDA events around ``--steps`` steps after ``--warmup``; the variants are timed alternately, ``--rounds`` times each,
and the best round is kept. ``--compile`` adds ``torch.compile`` of both models; ``--channels-last`` puts both models
and the batch in channels_last; ``--profile`` adds a profile of a few steps of each (GPU-busy fraction, top kernels and
host operators, as ``benchmarks/step_profile.py``). The report also gives the host time of formers' matching per step (``matching_ms``)
against the whole step, which shows whether the step is host-bound.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/detr_speed.py [--compile] [--channels-last]``
(``--smoke``: a tiny model at 128x128 on CPU, checking the script runs). Writes
``benchmarks/results/detr_speed_<gpu>.json`` (and ``$OUT/detr_speed.json`` when set) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from step_profile import profiled  # benchmarks/ is on the path when a script here runs
from vision_bench import timed

import formers
from formers.data.detection_loader import pad_targets
from formers.layers import value_checks
from formers.tasks.detection import DetectionTask

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=800)
    parser.add_argument("--boxes", type=int, default=7, help="average ground-truth boxes per image")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of both models")
    parser.add_argument("--channels-last", action="store_true", help="models and batch in channels_last")
    parser.add_argument("--profile", action="store_true",
                        help="also profile a few steps of each variant: GPU-busy fraction, top kernels and host ops")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/...)")
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.batch_size, args.image_size, args.warmup, args.steps, args.rounds = 2, 128, 1, 2, 1
    return args


def build_pair(smoke: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Hugging Face's DetrForObjectDetection (ResNet-50, or a tiny one under ``smoke``) and formers' DETR with the
    same weights, through a ``save_pretrained`` directory as a user would convert them."""
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    if smoke:
        backbone = ResNetConfig(layer_type="basic", depths=[1, 1, 1, 1], embedding_size=8, hidden_sizes=[8, 16, 32, 64],
                                out_features=["stage4"])
        size = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                    encoder_attention_heads=4, decoder_attention_heads=4, num_queries=20)
    else:
        backbone, size = ResNetConfig(out_features=["stage4"]), {}
    config = DetrConfig(use_timm_backbone=False, backbone_config=backbone, num_labels=91, auxiliary_loss=True,
                        **size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = DetrForObjectDetection(config)
    with tempfile.TemporaryDirectory() as tmp:
        ref.save_pretrained(tmp)
        ours = formers.from_pretrained(tmp)
    # DETR trains the backbone but its stem and first stage. Hugging Face's DetrConvEncoder means to do the same, but
    # its name test ("stage.1" against the parameters' "stages.1") freezes the whole Hugging Face ResNet: unfreeze its
    # stages 2-4 so that both models train the same parameters (counted in the report).
    for name, param in ref.model.backbone.named_parameters():
        param.requires_grad_(any(f"stages.{i}." in name for i in (1, 2, 3)))
    ours.freeze_backbone(1)
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (ref, ours)]
    if trainable[0] != trainable[1]:
        raise AssertionError(f"the models train different parameters: Hugging Face {trainable[0]}, formers {trainable[1]}")
    return ref.train(), ours.train()


def make_batch(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Images (uint8, with the bottom/right eighth of every other image padding), masks and random targets."""
    g = torch.Generator().manual_seed(0)
    b, s = args.batch_size, args.image_size
    images = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, generator=g)
    mask = torch.ones(b, s, s, dtype=torch.bool)
    mask[1::2, s - s // 8 :] = False
    mask[1::2, :, s - s // 8 :] = False
    sizes = torch.randint(1, 2 * args.boxes, (b,), generator=g).tolist()
    total = sum(sizes)
    centre, wh = torch.rand(total, 2, generator=g) * 0.6 + 0.2, torch.rand(total, 2, generator=g) * 0.25 + 0.05
    batch = {"images": images, "padding_mask": mask, "labels": torch.randint(0, 91, (total,), generator=g),
             "boxes": torch.cat([centre, wh], 1), "sizes": sizes}
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def main() -> None:
    import transformers

    args = parse_args()
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    ref, ours = build_pair(args.smoke)
    ref, ours = ref.to(device), ours.to(device)
    memory = torch.channels_last if args.channels_last else torch.contiguous_format
    ref, ours = ref.to(memory_format=memory), ours.to(memory_format=memory)
    batch = make_batch(args, device)
    task = DetectionTask(91, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    pixels = task.prepare(batch["images"], batch["padding_mask"]).contiguous(memory_format=memory)
    labels = [{"class_labels": lab, "boxes": box} for lab, box in
              zip(batch["labels"].split(batch["sizes"]), batch["boxes"].split(batch["sizes"]))]
    amp = torch.autocast(device.type, dtype=torch.bfloat16)

    ref.eval(), ours.eval()
    with torch.no_grad():
        theirs = ref(pixel_values=pixels[:2], pixel_mask=batch["padding_mask"][:2].long())
        diff = (ours(pixels[:2], batch["padding_mask"][:2]).logits - theirs.logits).abs().max().item()
    ref.train(), ours.train()

    def hf_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            with amp:
                loss = model(pixel_values=pixels, pixel_mask=batch["padding_mask"].long(), labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    padded = pad_targets(batch["labels"], batch["boxes"], batch["sizes"])  # (B, M), (B, M, 4): the loader's layout

    def formers_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            with amp:
                output = model(pixels, batch["padding_mask"])
                loss, _ = task.criterion(output, *padded, batch["sizes"])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    fused = device.type == "cuda"
    variants: dict[str, tuple[torch.nn.Module, Callable]] = {"hf": (ref, hf_step), "formers": (ours, formers_step)}
    if args.compile:
        variants["hf compiled"] = (torch.compile(ref), hf_step)
        variants["formers compiled"] = (torch.compile(ours), formers_step)
    steps = {}
    for label, (model, make) in variants.items():
        params = [p for p in model.parameters() if p.requires_grad]
        steps[label] = make(model, torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4, fused=fused or None))
    best = dict.fromkeys(steps, 0.0)
    with value_checks(False):
        for _ in range(args.rounds):
            for label, step in steps.items():
                best[label] = max(best[label], args.batch_size / timed(step, args.warmup, args.steps, device))

    # Host time of formers' matching: the cost matrices' transfer plus the assignments, per training step.
    with torch.no_grad(), amp, value_checks(False):
        output = ours(pixels, batch["padding_mask"])
    stacked = [*output.aux_outputs, output]
    logits, boxes = torch.stack([o.logits for o in stacked]), torch.stack([o.boxes for o in stacked])
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        task.criterion.matcher.assign(logits, boxes, *padded, batch["sizes"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    matching_ms = (time.perf_counter() - t0) / 10 * 1000

    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "model": "tiny (smoke)" if args.smoke else "DETR-R50 (91 labels, 100 queries, 6+6 layers)",
        "batch_size": args.batch_size, "image_size": args.image_size, "dtype": "bf16 autocast",
        "channels_last": args.channels_last, "boxes_per_image": batch["sizes"],
        "max_abs_logit_diff_fp32": diff,
        "trainable_parameters": sum(p.numel() for p in ours.parameters() if p.requires_grad),
        "images_per_second": best,
        "speedup_vs_hf": best["formers"] / best["hf"],
        "matching_ms": matching_ms,
        "formers_step_ms": 1000 * args.batch_size / best["formers"],
    }
    if args.compile:
        result["compiled_speedup_vs_hf_compiled"] = best["formers compiled"] / best["hf compiled"]
        result["formers_compiled_vs_hf"] = best["formers compiled"] / best["hf"]
    if device.type == "cuda":
        peak = {}
        for label, step in steps.items():
            torch.cuda.reset_peak_memory_stats()
            with value_checks(False):
                step()
            peak[label] = torch.cuda.max_memory_allocated() / 2**30
        result["train_peak_gib"] = peak
    if args.profile:
        result["profile"] = {}
        for label, step in steps.items():
            with value_checks(False):
                result["profile"][label] = profiled(lambda n, step=step: [step() for _ in range(n)], 5, device, 20)
            prof = result["profile"][label]
            print(f"== {label}: {prof['wall_ms_per_step']:.1f} ms per step, kernels {prof['kernel_ms_per_step']:.1f} ms "
                  f"({prof['gpu_busy_fraction']:.0%} busy), {prof['kernel_launches_per_step']:.0f} launches")
            for k in prof["top_kernels"]:
                print(f"   {k['ms_per_step']:7.2f} ms  x{k['calls_per_step']:5.0f}  {k['name']}")
            for k in prof["top_host_ops"]:
                print(f"   host {k['self_ms_per_step']:7.2f} ms  x{k['calls_per_step']:5.0f}  {k['name']}")
    print(f"{result['model']}, batch {args.batch_size}, {args.image_size}x{args.image_size}, bf16, {result['device']}")
    for label, ips in best.items():
        print(f"  {label:18s} {ips:8.2f} images/s")
    print(f"  formers matching {matching_ms:.2f} ms of a {result['formers_step_ms']:.1f} ms step")
    print(json.dumps(result, indent=2), flush=True)
    text = json.dumps(result, indent=2) + "\n"
    if args.out is not None or not args.smoke:
        tag = result["device"].lower().replace("nvidia ", "").split()[0] if device.type == "cuda" else "cpu"
        path = args.out if args.out is not None else RESULTS / f"detr_speed_{tag}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "detr_speed.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
