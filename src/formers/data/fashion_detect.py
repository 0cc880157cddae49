"""``fashion-detect``: a small detection set generated deterministically from Fashion-MNIST.

Each canvas is a black RGB square holding a few Fashion-MNIST items (10 classes), each scaled by a random factor,
tinted a random colour and pasted where it overlaps earlier items by at most ``max_iou`` (box IoU); its box is the
tight box of the item's visible pixels (grey level above ``ink_threshold``), not the 28x28 frame. Train canvases
take their items from Fashion-MNIST's training split, test canvases from its test split, so no item is seen in both.
The same arguments give the same files byte for byte (one ``numpy`` generator per split, seeded by ``seed``).

Written as COCO: ``<root>/images/<split>/<index>.png`` and ``<root>/annotations/<split>.json`` (category ids 1..10).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from formers.data.detection import DetectionDataset, read_coco
from formers.data.images import FASHION_MNIST_CLASSES, load_fashion_mnist

SPLIT_SEEDS = {"train": 0, "test": 1}


@dataclass
class FashionDetectConfig:
    """How the canvases are made (defaults: the CPU recipe's 96x96 canvases)."""

    num_train: int = 2000
    num_test: int = 500
    canvas_size: int = 96
    min_items: int = 1
    max_items: int = 3
    min_scale: float = 1.0  # item side = 28 * scale pixels
    max_scale: float = 2.0
    max_iou: float = 0.1
    ink_threshold: int = 30  # grey level (0-255) above which an item pixel counts as visible
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_items <= self.max_items:
            raise ValueError(f"need 1 <= min_items <= max_items, got {self.min_items} and {self.max_items}")
        if not 0 < self.min_scale <= self.max_scale or round(28 * self.max_scale) > self.canvas_size:
            raise ValueError(f"scales [{self.min_scale}, {self.max_scale}] must be > 0 and fit 28 * max_scale pixels "
                             f"in the {self.canvas_size}px canvas")


def _iou(box: np.ndarray, others: list[np.ndarray]) -> float:
    if not others:
        return 0.0
    o = np.stack(others)  # (N, 4)
    lt, rb = np.maximum(box[:2], o[:, :2]), np.minimum(box[2:], o[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    union = (box[2:] - box[:2]).prod() + (o[:, 2:] - o[:, :2]).prod(-1) - inter
    return float((inter / union).max())


def make_canvases(items: np.ndarray, labels: np.ndarray, count: int, config: FashionDetectConfig,
                  seed: int) -> list[tuple[np.ndarray, list[tuple[list[int], int]]]]:
    """``count`` canvases (H, W, 3) uint8 with their ``([x0, y0, x1, y1], label)`` objects.

    Args:
        items: (N, 28, 28) uint8 Fashion-MNIST images to draw from.
        labels: (N,) their classes.
        count: canvases to make.
        config: the :class:`FashionDetectConfig`.
        seed: the generator's seed.
    """
    rng = np.random.default_rng(seed)
    size = config.canvas_size
    out = []
    for _ in range(count):
        canvas = np.zeros((size, size, 3), dtype=np.uint8)
        objects: list[tuple[list[int], int]] = []
        boxes: list[np.ndarray] = []
        for _ in range(int(rng.integers(config.min_items, config.max_items + 1))):
            index = int(rng.integers(len(items)))
            side = int(round(28 * rng.uniform(config.min_scale, config.max_scale)))
            item = torch.from_numpy(items[index]).float()[None, None]  # (28, 28) -> (1, 1, 28, 28)
            item = F.interpolate(item, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            item = item[0, 0].round().clamp(0, 255).numpy().astype(np.uint8)  # (side, side)
            ys, xs = np.nonzero(item > config.ink_threshold)
            if len(xs) == 0:
                continue
            tint = rng.uniform(0.5, 1.0, size=3)
            for _attempt in range(20):
                x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
                box = np.array([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1], dtype=np.float64)
                if _iou(box, boxes) <= config.max_iou:
                    break
            else:
                continue
            patch = (item[:, :, None] * tint[None, None, :]).round().astype(np.uint8)  # (side, side, 3)
            region = canvas[y : y + side, x : x + side]
            np.maximum(region, patch, out=region)
            boxes.append(box)
            objects.append(([int(v) for v in box], int(labels[index])))
        out.append((canvas, objects))
    return out


def generate_fashion_detect(root: str | os.PathLike[str], config: FashionDetectConfig | None = None,
                            data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Writes the ``fashion-detect`` train and test splits under ``root`` (COCO JSON + PNG images).

    Args:
        root: output folder (created); an existing set made with the same config is kept as it is.
        config: the :class:`FashionDetectConfig`.
        data_dir: where Fashion-MNIST is (see :func:`formers.data.images.fashion_mnist_dir`).

    Returns:
        ``root``.
    """
    from PIL import Image

    config = config or FashionDetectConfig()
    root = Path(root)
    stamp = root / "fashion_detect.json"
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == asdict(config):
        return root
    for split, count in (("train", config.num_train), ("test", config.num_test)):
        source = load_fashion_mnist(split, data_dir)
        items, labels = source.images[:, 0].numpy(), source.labels.numpy()  # (N, 28, 28), (N,)
        canvases = make_canvases(items, labels, count, config, seed=config.seed * 1000 + SPLIT_SEEDS[split])
        image_dir = root / "images" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i, (canvas, objects) in enumerate(canvases, start=1):
            name = f"{i:06d}.png"
            Image.fromarray(canvas).save(image_dir / name)
            images.append({"id": i, "file_name": name, "width": config.canvas_size, "height": config.canvas_size})
            for (x0, y0, x1, y1), label in objects:
                annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": label + 1,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                    "iscrowd": 0})
        categories = [{"id": k + 1, "name": name} for k, name in enumerate(FASHION_MNIST_CLASSES)]
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}), encoding="utf-8")
    stamp.write_text(json.dumps(asdict(config)), encoding="utf-8")
    return root


def load_fashion_detect(root: str | os.PathLike[str], split: str) -> DetectionDataset:
    """Reads a generated ``fashion-detect`` split (``"train"`` or ``"test"``)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    return read_coco(root / "annotations" / f"{split}.json", root / "images" / split, invalid_boxes="raise",
                     verify_images=False)


__all__ = ["FashionDetectConfig", "generate_fashion_detect", "load_fashion_detect", "make_canvases"]
