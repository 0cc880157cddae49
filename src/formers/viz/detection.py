"""Detection overlays: boxes, class names and scores drawn onto an image (torchvision's ``draw_bounding_boxes``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

# Distinct colours (matplotlib's tab10), one per class, repeating past ten.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def draw_detections(image: Tensor, boxes: Tensor, labels: Sequence[int], scores: Sequence[float] | None = None,
                    class_names: Sequence[str] | None = None, width: int = 2) -> Tensor:
    """The image with each box outlined in its class's colour and captioned ``name score``.

    Args:
        image: (3, H, W) uint8 RGB.
        boxes: (N, 4) corners (x0, y0, x1, y1) in the image's pixels.
        labels: N class indices.
        scores: N scores to print after the names (optional).
        class_names: names of the classes (default: the indices).
        width: line width in pixels.

    Returns:
        A new (3, H, W) uint8 image.
    """
    from torchvision.utils import draw_bounding_boxes

    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"image must be (3, H, W) uint8 RGB, got {image.dtype} {tuple(image.shape)}")
    if boxes.shape[0] != len(labels):
        raise ValueError(f"{boxes.shape[0]} boxes but {len(labels)} labels")
    if boxes.shape[0] == 0:
        return image.clone()
    captions = []
    for k, label in enumerate(labels):
        name = class_names[label] if class_names is not None else str(label)
        captions.append(f"{name} {scores[k]:.2f}" if scores is not None else name)
    colours = [PALETTE[int(label) % len(PALETTE)] for label in labels]
    return draw_bounding_boxes(image, boxes.float(), labels=captions, colors=colours, width=width)


def save_image(image: Tensor, path: str | os.PathLike[str]) -> Path:
    """Writes a (3, H, W) uint8 image as a PNG (or any format Pillow infers from the suffix)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())).save(path)  # (3, H, W) -> (H, W, 3)
    return path


__all__ = ["PALETTE", "draw_detections", "save_image"]
