"""The seeds' contrast to DETR: torchvision's Faster R-CNN (ResNet-50 FPN, anchors + NMS) trained from scratch on a
detection recipe's data, in the same time budget, scored with the same COCO evaluation, with and without its NMS.

The data, split, tiling and augmentation are the recipe's (``formers.recipes.detection.load_datasets`` and
``train_transform``), so both detectors see the same images; Faster R-CNN resizes internally, set to the recipe's
evaluation size. No pretrained weights (``weights=None, weights_backbone=None``: trainable BatchNorm, all layers
trained). SGD with momentum 0.9, lr 0.02 x batch/16 after a linear warmup (torchvision's reference recipe), weight
decay 1e-4, bf16 autocast on a GPU, for ``--minutes`` (default: the recipe's ``train.max_minutes``). Evaluation keeps
100 detections per image; "without NMS" sets the ROI heads' NMS threshold to 1.0 (nothing suppressed), which shows
what anchors need NMS for; DETR's report gives its own AP with and without NMS.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/faster_rcnn_baseline.py fashion-detect`` (or
``deepforest-trees``; ``--smoke``: a few steps on a CPU at a tiny size). Writes
``benchmarks/results/faster_rcnn_<recipe>_<gpu>.json`` (and ``$OUT/``) and prints the APs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from formers.config import from_dict, parse_set_args
from formers.data.detection_loader import (
    DetectionLoader,
    eval_transform,
    train_transform,
)
from formers.devices import move_to_device
from formers.recipes.detection import (
    DetectionData,
    DetectionOptions,
    channel_mean_std,
    load_datasets,
    train_pad_multiple,
)
from formers.recipes.recipe import load_recipe
from formers.tasks.metrics import coco_evaluate

RESULTS = Path(__file__).resolve().parent / "results"


def build_model(num_classes: int, mean: list[float], std: list[float], size: int, max_size: int) -> torch.nn.Module:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                                   trainable_backbone_layers=5, min_size=size, max_size=max_size, image_mean=mean,
                                   image_std=std)


def targets_of(batch: dict[str, Any]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """torchvision's inputs: unpadded [0, 1] images and per-image corner boxes in pixels, labels 1.. (0: background)."""
    images, targets = [], []
    boxes = [row[:n] for row, n in zip(batch["boxes"], batch["sizes"])]  # (B, M, 4) padded rows -> (n, 4) each
    labels = [row[:n] for row, n in zip(batch["labels"], batch["sizes"])]
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        mask = batch["padding_mask"][i]
        h, w = int(mask.any(1).sum()), int(mask.any(0).sum())
        images.append(batch["images"][i, :, :h, :w].float() / 255.0)
        cx, cy, bw, bh = b.unbind(-1)
        xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1) * b.new_tensor([w, h, w, h])
        targets.append({"boxes": xyxy, "labels": lab + 1})
    return images, targets


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DetectionLoader, category_ids: list[int], nms: bool,
             device: torch.device) -> dict[str, float]:
    model.eval()
    saved = model.roi_heads.nms_thresh
    model.roi_heads.nms_thresh = saved if nms else 1.0
    records = []
    for batch in loader:
        batch = move_to_device(batch, device)
        images, _ = targets_of(batch)
        outputs = model(images)
        for image_id, (oh, ow), image, out in zip(batch["image_ids"], batch["orig_sizes"], images, outputs):
            scale = torch.tensor([ow / image.shape[2], oh / image.shape[1]] * 2, device=device)
            for box, label, score in zip((out["boxes"] * scale).tolist(), out["labels"].tolist(), out["scores"].tolist()):
                x0, y0, x1, y1 = box
                records.append({"image_id": int(image_id), "category_id": category_ids[label - 1],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    model.roi_heads.nms_thresh = saved
    return coco_evaluate(loader.coco, records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="a detection recipe: fashion-detect, deepforest-trees or a YAML path")
    parser.add_argument("--minutes", type=float, default=None, help="training time (default: the recipe's)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="a few steps on a CPU at a tiny size")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe overrides, as formers train takes them (only data and task_options matter here)")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, parse_set_args(args.overrides))
    data = from_dict(DetectionData, recipe.data, prefix="data.")
    options = from_dict(DetectionOptions, recipe.task_options, prefix="task_options.")
    if args.smoke:
        data.generate = {**data.generate, "num_train": 16, "num_test": 8}
        data.root = data.root or "/tmp/formers-faster-rcnn-smoke"
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    torch.manual_seed(recipe.train.seed)
    train, test = load_datasets(data)
    mean, std = (options.mean, options.std) if options.mean and options.std else channel_mean_std(train)
    size = options.eval_size or max(max(im.height, im.width) for im in test.images)
    model = build_model(train.num_classes, mean, std, size, options.max_size).to(device)
    batch_size = 2 if args.smoke else data.batch_size
    crop = tuple(options.crop) if options.crop else None
    loader = DetectionLoader(train, batch_size, train_transform(options.scales, options.max_size, crop,
                                                                options.crop_scales, options.hflip),
                             seed=recipe.train.seed, num_workers=0 if args.smoke else data.num_workers,
                             pad_multiple=train_pad_multiple(data, device))  # as formers train
    test_loader = DetectionLoader(test, batch_size, eval_transform(options.eval_size, options.max_size), train=False)
    lr = 0.02 * batch_size / 16
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warmup = 10 if args.smoke else 1000
    minutes = 0.2 if args.smoke else (args.minutes or recipe.train.max_minutes or 30.0)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    start, step, epoch, done = time.perf_counter(), 0, 0, False
    while not done:
        loader.set_epoch(epoch)
        epoch += 1
        for batch in loader:
            model.train()
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warmup)
            images, targets = targets_of(move_to_device(batch, device))
            with amp:
                losses = model(images, targets)
            loss = sum(losses.values())
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"non-finite loss at step {step}: {losses}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            step += 1
            if step % 100 == 0:
                print(f"step {step} loss {loss.item():.4f} ({(time.perf_counter() - start) / 60:.1f} min)", flush=True)
            if time.perf_counter() - start > minutes * 60 or (args.smoke and step >= 3):
                done = True
                break
    trained_minutes = (time.perf_counter() - start) / 60
    with amp:
        with_nms = evaluate(model, test_loader, train.category_ids, True, device)
        without_nms = evaluate(model, test_loader, train.category_ids, False, device)
    result = {
        "recipe": recipe.name, "model": "torchvision fasterrcnn_resnet50_fpn, from scratch", "steps": step,
        "epochs": epoch, "train_minutes": round(trained_minutes, 2), "batch_size": batch_size, "lr": lr,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "test_with_nms": {k: round(v, 4) for k, v in with_nms.items()},
        "test_without_nms": {k: round(v, 4) for k, v in without_nms.items()},
    }
    print(f"Faster R-CNN on {recipe.name}: AP {with_nms['ap']:.4f} / AP50 {with_nms['ap50']:.4f} with NMS, "
          f"AP {without_nms['ap']:.4f} / AP50 {without_nms['ap50']:.4f} without, after {trained_minutes:.1f} minutes")
    print(json.dumps(result, indent=2))
    text = json.dumps(result, indent=2) + "\n"
    if args.out is not None or not args.smoke:
        tag = result["device"].lower().replace("nvidia ", "").split()[0] if device.type == "cuda" else "cpu"
        path = args.out if args.out is not None else RESULTS / f"faster_rcnn_{recipe.name}_{tag}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / f"faster_rcnn_{recipe.name}.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
