"""TNT on a GPU: bf16 throughput against timm, and tnt_mini_28 trained from scratch on Fashion-MNIST.

    python benchmarks/tnt_gpu.py speed [--models tnt_s_patch16_224,tnt_b_patch16_224] [--batch 256]
    python benchmarks/tnt_gpu.py fashion [--epochs 50] [--minutes 3.5] [--compile]

``speed`` times eager bf16-autocast inference (no_grad) and training steps (forward, backward, fused AdamW) of
formers and timm on random 224x224 images and prints/writes images per second. ``fashion`` reads the Fashion-MNIST
idx files from ``$FASHION_MNIST_DIR`` (default ``/usr/share/datasets/fashion-mnist``, Debian's
``dataset-fashion-mnist``), keeps the whole set on the GPU, trains with horizontal flips, AdamW (lr 2e-3, wd 0.05,
batch 512, 2 warm-up epochs then cosine), label smoothing 0.1, and reports the test accuracy. Results go to
``benchmarks/results/tnt_<mode>.json``.

H200 figures (torch 2.11, timm 1.0.29), batch 256: TNT-S inference 3703 img/s vs timm 2726 (1.36x), training
1592 vs 1250 (1.27x).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import formers
from formers.training.optim import param_groups

RESULTS = Path(__file__).resolve().parent / "results"


def _throughput(model: torch.nn.Module, batch: int, train: bool, steps: int = 10, warmup: int = 3) -> float:
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    y = torch.randint(0, 1000, (batch,), device="cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True) if train else None
    model.train(train)

    def step() -> None:
        with torch.autocast("cuda", torch.bfloat16), torch.set_grad_enabled(train):
            out = model(x)
            logits = out.logits if hasattr(out, "logits") else out
        if train:
            F.cross_entropy(logits.float(), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def speed(models: list[str], batch: int) -> dict:
    import timm

    results = {}
    for name in models:
        for train in (False, True):
            ours = formers.create_model(name, drop_path_rate=0.0).cuda()
            a = _throughput(ours, batch, train)
            del ours
            theirs = timm.create_model(name).cuda()
            b = _throughput(theirs, batch, train)
            del theirs
            torch.cuda.empty_cache()
            key = f"{name}_{'train' if train else 'inference'}_bs{batch}"
            results[key] = {"formers_img_s": round(a, 1), "timm_img_s": round(b, 1), "ratio": round(a / b, 3)}
            print(key, results[key], flush=True)
    return results


def _read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion(epochs: int, minutes: float, compile_model: bool, lr: float = 2e-3, batch: int = 512) -> dict:
    root = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    if not (root / "train-images-idx3-ubyte.gz").exists():
        raise SystemExit(f"Fashion-MNIST idx files not found in {root}; set FASHION_MNIST_DIR")
    mean, std = 0.2860, 0.3530

    def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.tensor(_read_idx(root / f"{split}-images-idx3-ubyte.gz")).cuda().float().div(255)[:, None]
        y = torch.tensor(_read_idx(root / f"{split}-labels-idx1-ubyte.gz")).cuda().long()
        return (x - mean) / std, y

    (xtr, ytr), (xte, yte) = load("train"), load("t10k")
    torch.manual_seed(0)
    model = formers.create_model("tnt_mini_28").cuda()
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=lr, fused=True)
    steps_per_epoch = len(xtr) // batch
    total, warm = steps_per_epoch * epochs, steps_per_epoch * 2
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    train_fwd = torch.compile(model) if compile_model else model

    def evaluate() -> float:
        model.eval()
        correct = 0
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
            for i in range(0, len(xte), 2000):
                correct += (model(xte[i : i + 2000]).logits.argmax(-1) == yte[i : i + 2000]).sum().item()
        model.train()
        return correct / len(xte)

    start, log = time.perf_counter(), []
    for epoch in range(epochs):
        perm = torch.randperm(len(xtr), device="cuda")
        for s in range(steps_per_epoch):
            idx = perm[s * batch : (s + 1) * batch]
            x, y = xtr[idx], ytr[idx]
            flip = torch.rand(len(x), device="cuda") < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            with torch.autocast("cuda", torch.bfloat16):
                loss = F.cross_entropy(train_fwd(x).logits.float(), y, label_smoothing=0.1)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
        elapsed = time.perf_counter() - start
        acc = evaluate() if epoch % 10 == 9 else None
        log.append({"epoch": epoch + 1, "time_s": round(elapsed, 1), "loss": round(loss.item(), 4), "test_acc": acc})
        print(log[-1], flush=True)
        if elapsed > minutes * 60:
            break
    result = {"test_accuracy": evaluate(), "time_s": round(time.perf_counter() - start, 1), "epochs_done": len(log),
              "epochs": epochs, "compile": compile_model, "lr": lr, "batch": batch, "log": log}
    print("test accuracy", result["test_accuracy"], "in", result["time_s"], "s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "fashion"])
    parser.add_argument("--models", default="tnt_s_patch16_224,tnt_b_patch16_224")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=3.5)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    if args.mode == "speed":
        result = speed(args.models.split(","), args.batch)
    else:
        result = fashion(args.epochs, args.minutes, args.compile)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"tnt_{args.mode}.json").write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
