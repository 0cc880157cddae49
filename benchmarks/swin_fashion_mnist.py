"""Standalone check that ``swin_mini_28`` learns Fashion-MNIST from scratch within a time budget (one GPU).

Independent of the training CLI: the 60,000 training images sit on the GPU as uint8; each batch of 256 is
randomly cropped (2 px zero padding) and flipped there, normalised, and trained with label smoothing 0.1, AdamW
(lr 1e-3, weight decay 0.05 except norms/biases/bias tables), warmup + cosine decay sized to fit the budget, bf16
autocast. The final weights are evaluated once on the 10,000 test images (no selection on the test split).

Usage (GPU): ``python benchmarks/swin_fashion_mnist.py --data DIR [--budget-s 170] [--max-epochs 40]`` where DIR holds
the four ``*-idx?-ubyte.gz`` files (Debian's dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist).
Target: test accuracy >= 0.92 (aim 0.94) in about 3 minutes on an H100.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import formers

MEAN, STD = 0.2860, 0.3530


def load(directory: Path, split: str, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 1, 28, 28) and int64 labels (N,) of ``split`` ('train' or 't10k')."""
    with gzip.open(directory / f"{split}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(directory / f"{split}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.tensor(images, device=device), torch.tensor(labels, device=device).long()


def augment(images: torch.Tensor) -> torch.Tensor:
    """Random 28x28 crops of the 2-px zero-padded images and horizontal flips, normalised: (B, 1, 28, 28) float."""
    b, device = images.shape[0], images.device
    padded = F.pad(images.float(), (2, 2, 2, 2))  # (B, 1, 32, 32)
    i, j = torch.randint(0, 5, (b,), device=device), torch.randint(0, 5, (b,), device=device)
    rows = (i[:, None] + torch.arange(28, device=device))[:, :, None]  # (B, 28, 1)
    cols = (j[:, None] + torch.arange(28, device=device))[:, None, :]  # (B, 1, 28)
    crops = padded[torch.arange(b, device=device)[:, None, None], 0, rows, cols][:, None]  # (B, 1, 28, 28)
    flip = torch.rand(b, device=device) < 0.5
    crops = torch.where(flip[:, None, None, None], crops.flip(-1), crops)
    return (crops / 255 - MEAN) / STD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--budget-s", type=float, default=170.0)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    x_train, y_train = load(args.data, "train", "cuda")
    x_test, y_test = load(args.data, "t10k", "cuda")
    model = formers.create_model("swin_mini_28").cuda()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "table" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "table" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], lr=1e-3)
    steps_per_epoch = len(x_train) // args.batch

    # Time a few forward/backward passes to fit whole epochs (and the cosine schedule) into the budget.
    probe_x, probe_y = x_train[: args.batch], y_train[: args.batch]
    for k in range(40):
        if k == 10:
            torch.cuda.synchronize()
            start = time.time()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            F.cross_entropy(model(augment(probe_x)).logits, probe_y).backward()
    torch.cuda.synchronize()
    step_s = (time.time() - start) / 30 * 1.15  # + the optimizer step
    opt.zero_grad(set_to_none=True)
    epochs = max(1, min(args.max_epochs, int(args.budget_s / (step_s * steps_per_epoch))))
    total, warmup = epochs * steps_per_epoch, max(1, min(500, epochs * steps_per_epoch // 10))

    def lr_factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    start, log = time.time(), []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x_train), device="cuda")
        for k in range(steps_per_epoch):
            idx = order[k * args.batch : (k + 1) * args.batch]
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(augment(x_train[idx])).logits, y_train[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        log.append({"epoch": epoch + 1, "time_s": round(time.time() - start, 1), "loss": round(loss.item(), 4)})
        print(log[-1], flush=True)
    model.eval()
    correct = 0
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for k in range(0, len(x_test), 2000):
            images = (x_test[k : k + 2000].float() / 255 - MEAN) / STD
            correct += (model(images).logits.argmax(-1) == y_test[k : k + 2000]).sum().item()
    result = {"model": "swin_mini_28", "gpu": torch.cuda.get_device_name(), "epochs": epochs,
              "train_time_s": round(time.time() - start, 1), "test_accuracy": correct / len(x_test), "log": log}
    print(json.dumps({k: v for k, v in result.items() if k != "log"}))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
