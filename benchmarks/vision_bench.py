"""Shared harness of the vision speed benchmarks: formers against timm, same weights, one run.

The family scripts (``vit_speed.py``, ``swin_speed.py``, ``tnt_speed.py``, ``efficientformer_speed.py``) are a
:class:`SpeedSpec` each, plus their docstring; everything else lives here:

* the pair: timm's model (random init, dropout off, stochastic depth ``SpeedSpec.drop_path_rate``) and the formers
  model holding the same weights (``formers.from_timm``), plus any extra timm builds the spec asks for;
* the steps: a training step is bf16-autocast forward, cross-entropy on float32 logits outside the model,
  backward, fused AdamW step and zeroing the gradients; an inference step is the bf16-autocast forward under
  ``torch.inference_mode`` (``torch.no_grad`` where the spec says so). The model is put in train / eval mode before
  each timed run (outside the timed region) and, where the spec says so, also inside every step;
* the timing: seconds per step from CUDA events around ``--steps`` steps after ``--warmup`` steps (wall clock on
  CPU); the variants are timed alternately, ``--rounds`` times each, and the best round is kept. formers'
  host-side NaN check of the input reads the device, so those rounds run under ``value_checks(False)`` as the
  training tasks do; one more run of formers with the checks on is reported as ``formers (checks)``;
* the output: a printed table, and the JSON in ``benchmarks/results/<stem>_<gpu>.json`` (not in ``--smoke`` runs;
  ``--out FILE`` overrides the path) and in ``$OUT/<stem>.json`` when ``$OUT`` is set;
* ``--smoke``: the same code on CPU with the spec's tiny timm model, batch 4, one round of two steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

import formers
from formers.layers import value_checks

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("train", "infer")


@dataclass(frozen=True)
class SpeedSpec:
    """How one family is measured: the fields are the differences between the family scripts.

    Attributes:
        default_models: timm model name(s) timed by default (``--model`` takes a comma-separated list).
        result_stem: model name -> file stem of the JSON (``<stem>_<gpu>.json``).
        smoke_timm_kwargs: ``timm.create_model`` keyword arguments of the tiny ``--smoke`` model.
        smoke_overrides: formers config fields the tiny model's names and shapes cannot tell.
        drop_path_rate: stochastic depth of both models while training (the same in both libraries).
        mode_each_step: call ``model.train()`` / ``model.eval()`` inside every timed step too (BatchNorm models).
        infer_no_grad: inference under ``torch.no_grad`` instead of ``torch.inference_mode``.
        cudnn_benchmark: set ``torch.backends.cudnn.benchmark`` (lets cuDNN pick convolution algorithms).
        extra_timm: label -> setup run before building one more timm model with the same weights (e.g. switching
            timm's experimental fused attention on); the extra models are timed as further variants.
        batch_size, warmup, steps, rounds: the defaults of ``--batch-size``, ``--warmup``, ``--steps``, ``--rounds``.
    """

    default_models: str
    result_stem: Callable[[str], str]
    smoke_timm_kwargs: dict[str, Any]
    smoke_overrides: dict[str, Any] = field(default_factory=dict)
    drop_path_rate: float = 0.0
    mode_each_step: bool = False
    infer_no_grad: bool = False
    cudnn_benchmark: bool = False
    extra_timm: dict[str, Callable[[], None]] = field(default_factory=dict)
    batch_size: int = 256
    warmup: int = 5
    steps: int = 20
    rounds: int = 3


def parse_args(spec: SpeedSpec, description: str) -> argparse.Namespace:
    """The command line every speed script shares, with the spec's defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", "--models", dest="models", default=spec.default_models,
                        help="timm model name(s), comma-separated, registered in both libraries")
    parser.add_argument("--batch-size", "--batch", dest="batch_size", type=int, default=spec.batch_size)
    parser.add_argument("--warmup", type=int, default=spec.warmup)
    parser.add_argument("--steps", type=int, default=spec.steps)
    parser.add_argument("--rounds", type=int, default=spec.rounds)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of both models")
    parser.add_argument("--channels-last", action="store_true", help="models and batch in channels_last")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default: benchmarks/results/<stem>_<gpu>.json)")
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU: checks the script runs")
    args = parser.parse_args()
    if args.smoke:
        args.batch_size, args.warmup, args.steps, args.rounds = 4, 1, 2, 1
    return args


def build_timm(name: str, spec: SpeedSpec, smoke: bool) -> nn.Module:
    """timm's model, random init, dropout off, stochastic depth ``spec.drop_path_rate``; tiny under ``smoke``."""
    import timm

    size = spec.smoke_timm_kwargs if smoke else {}
    return timm.create_model(name, pretrained=False, drop_rate=0.0, drop_path_rate=spec.drop_path_rate, **size)


def build_pair(name: str, spec: SpeedSpec, smoke: bool) -> tuple[nn.Module, nn.Module]:
    """timm's model and the formers model holding the same weights (both on the CPU, in train mode)."""
    ref = build_timm(name, spec, smoke)
    overrides = {**(spec.smoke_overrides if smoke else {}), "drop_path_rate": spec.drop_path_rate}
    ours = formers.from_timm(name, ref.state_dict(), overrides)
    return ref.train(), ours.train()


def timed(step: Callable[[], None], warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per step (CUDA events on GPU, wall clock on CPU)."""
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


def make_steps(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, is_formers: bool, spec: SpeedSpec
) -> dict[str, Callable[[], None]]:
    """``{"train": step, "infer": step}`` closures for one model on a fixed batch ``images`` (B, C, H, W)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=images.device.type == "cuda")
    amp = torch.autocast(images.device.type, dtype=torch.bfloat16)
    no_grad = torch.no_grad if spec.infer_no_grad else torch.inference_mode

    def logits(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out.logits if is_formers else out

    def train_step() -> None:
        if spec.mode_each_step:
            model.train()
        with amp:
            out = logits(images)
        loss = F.cross_entropy(out.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def infer_step() -> None:
        if spec.mode_each_step:
            model.eval()
        with no_grad(), amp:
            logits(images)

    return {"train": train_step, "infer": infer_step}


def images_per_second(
    model: nn.Module, step: Callable[[], None], kind: str, args: argparse.Namespace, device: torch.device
) -> float:
    """Images per second of one timed run of ``step``, the model in train mode for ``kind == "train"``."""
    model.train(kind == "train")
    return args.batch_size / timed(step, args.warmup, args.steps, device)


def train_peak_gib(model: nn.Module, train_step: Callable[[], None]) -> float:
    """Peak CUDA memory (GiB) during one training step, every variant's weights and optimizer state resident."""
    model.train()
    torch.cuda.reset_peak_memory_stats()
    train_step()
    return torch.cuda.max_memory_allocated() / 2**30


def max_logit_diff(ref: nn.Module, ours: nn.Module, images: torch.Tensor, bf16: bool) -> float:
    """Largest |formers - timm| logit on ``images`` (B, C, H, W), eval mode, under bf16 autocast or in fp32."""
    amp = torch.autocast(images.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    ref.eval(), ours.eval()
    with torch.no_grad(), amp:
        diff = (ours(images).logits.float() - ref(images).float()).abs().max().item()
    ref.train(), ours.train()
    return diff


def measure(name: str, spec: SpeedSpec, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Times one model in both libraries (and the spec's extra timm builds); returns the result record."""
    torch.manual_seed(0)
    ref, ours = build_pair(name, spec, args.smoke)
    models: dict[str, tuple[nn.Module, bool]] = {"timm": (ref, False), "formers": (ours, True)}
    for label, setup in spec.extra_timm.items():
        setup()
        extra = build_timm(name, spec, args.smoke)
        extra.load_state_dict(ref.state_dict())
        models[label] = (extra.train(), False)
    models = {label: (m.to(device), is_formers) for label, (m, is_formers) in models.items()}
    size = ours.config.image_size
    images = torch.randn(args.batch_size, ours.config.in_channels, size, size, device=device)
    labels = torch.randint(0, ours.config.num_classes, (args.batch_size,), device=device)
    if args.channels_last:
        models = {k: (m.to(memory_format=torch.channels_last), f) for k, (m, f) in models.items()}
        images = images.contiguous(memory_format=torch.channels_last)
    ref, ours = models["timm"][0], models["formers"][0]
    diff = {f"max_abs_logit_diff_{tag}": max_logit_diff(ref, ours, images[:8], bf16) for tag, bf16 in
            (("bf16", True), ("fp32", False))}

    if args.compile:
        models["timm compiled"] = (torch.compile(ref), False)
        models["formers compiled"] = (torch.compile(ours), True)
    steps = {label: make_steps(m, images, labels, f, spec) for label, (m, f) in models.items()}
    best = {label: dict.fromkeys(KINDS, 0.0) for label in steps}
    with value_checks(False):
        for _ in range(args.rounds):
            for label, step in steps.items():
                for kind in KINDS:
                    ips = images_per_second(models[label][0], step[kind], kind, args, device)
                    best[label][kind] = max(best[label][kind], ips)
    checks_on = {kind: images_per_second(ours, steps["formers"][kind], kind, args, device) for kind in KINDS}

    timm_eager = [label for label in steps if not label.startswith("formers") and "compiled" not in label]
    result: dict[str, Any] = {
        "model": name,
        "batch_size": args.batch_size,
        "image_size": size,
        "dtype": "bf16 autocast",
        "channels_last": args.channels_last,
        "drop_path_rate": spec.drop_path_rate,
        "rounds": args.rounds,
        **diff,
        "images_per_second": best,
        "formers_with_value_checks": checks_on,
        "speedup_vs_timm": {kind: best["formers"][kind] / best["timm"][kind] for kind in KINDS},
    }
    if len(timm_eager) > 1:
        result["speedup_vs_best_timm"] = {
            kind: best["formers"][kind] / max(best[label][kind] for label in timm_eager) for kind in KINDS
        }
    if args.compile:
        result["compiled_speedup_vs_timm_compiled"] = {
            kind: best["formers compiled"][kind] / best["timm compiled"][kind] for kind in KINDS
        }
    if device.type == "cuda":
        with value_checks(False):
            result["train_peak_gib"] = {label: train_peak_gib(models[label][0], step["train"])
                                        for label, step in steps.items()}
    return result


def print_table(result: dict[str, Any], device_name: str) -> None:
    """Images per second (and peak training memory on CUDA) of every variant, one row each."""
    size, peak = result["image_size"], result.get("train_peak_gib", {})
    print(f"{result['model']}, batch {result['batch_size']}, {size}x{size}, bf16, {device_name}")
    print(f"{'':18s} {'train img/s':>12s} {'infer img/s':>12s} {'train GiB':>10s}")
    rows = {**result["images_per_second"], "formers (checks)": result["formers_with_value_checks"]}
    for label, r in rows.items():
        gib = f"{peak[label]:10.2f}" if label in peak else ""
        print(f"{label:18s} {r['train']:12.0f} {r['infer']:12.0f} {gib}")


def write_json(result: dict[str, Any], stem: str, args: argparse.Namespace, tag: str) -> None:
    """Writes ``result`` to ``--out`` or ``benchmarks/results/<stem>_<tag>.json`` (not when smoke) and ``$OUT``."""
    text = json.dumps(result, indent=2) + "\n"
    if args.out is not None or not args.smoke:
        path = args.out if args.out is not None else RESULTS / f"{stem}_{tag}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / f"{stem}.json").write_text(text, encoding="utf-8")


def main(spec: SpeedSpec, description: str) -> None:
    """Parses the shared command line and times each ``--model``; prints and writes one JSON per model."""
    import timm

    args = parse_args(spec, description)
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if spec.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    tag = device_name.lower().replace("nvidia ", "").split()[0] if device.type == "cuda" else "cpu"
    for name in args.models.split(","):
        result = {"device": device_name, "torch": torch.__version__, "timm": timm.__version__,
                  "python": platform.python_version(), **measure(name, spec, args, device)}
        print_table(result, device_name)
        print(json.dumps(result, indent=2), flush=True)
        write_json(result, spec.result_stem(name), args, tag)
