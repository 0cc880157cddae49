"""Axis-aligned box operations shared by the detection model, its loss, its data pipeline and its metrics.

Formats (the last dimension holds the 4 coordinates; any leading dimensions are kept):

- ``xyxy``: corners (x0, y0, x1, y1), the format of the IoU functions below and of ``torchvision.ops``;
- ``cxcywh``: centre and size (cx, cy, w, h), what DETR predicts (normalised to the image by a sigmoid);
- ``xywh``: top-left corner and size (x, y, w, h), COCO's annotation and result format.

Areas and overlaps are continuous (a box from 0 to 10 is 10 wide), as in ``torchvision.ops`` and pycocotools. The
functions keep the input dtype; callers that need float32 under autocast (the matcher, the loss) upcast first.
Every function equals its ``torchvision.ops`` counterpart (``box_convert``, ``box_area``, ``box_iou``,
``generalized_box_iou``, ``generalized_box_iou_loss``) to float32 rounding (tests/layers/test_boxes.py).
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) centre/size -> (..., 4) corners."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) corners -> (..., 4) centre/size."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) COCO top-left/size -> (..., 4) corners."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def box_xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """(..., 4) corners -> (..., 4) COCO top-left/size."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([x0, y0, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Areas (...,) of corner boxes (..., 4); an inverted box gets a negative or zero area, as in torchvision."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union areas of boxes that broadcast against each other: (..., 4), (..., 4) -> (...,)."""
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])  # (..., 2)
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])  # (..., 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (..., 2)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    return inter, union


def _enclosing_area(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Area of the smallest box enclosing both boxes, broadcast: (..., 4), (..., 4) -> (...,)."""
    top_left = torch.minimum(boxes1[..., :2], boxes2[..., :2])  # (..., 2)
    bottom_right = torch.maximum(boxes1[..., 2:], boxes2[..., 2:])  # (..., 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (..., 2)
    return wh[..., 0] * wh[..., 1]


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise intersection over union of corner boxes.

    Args:
        boxes1: (N, 4) xyxy.
        boxes2: (M, 4) xyxy.

    Returns:
        (N, M) IoU; 0/0 (two empty boxes) gives NaN, as in torchvision.
    """
    inter, union = _inter_union(boxes1[:, None, :], boxes2[None, :, :])  # (N, M)
    return inter / union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al. 2019): IoU - (enclosing - union) / enclosing.

    Args:
        boxes1: (N, 4) xyxy.
        boxes2: (M, 4) xyxy.

    Returns:
        (N, M) values in [-1, 1].
    """
    a, b = boxes1[:, None, :], boxes2[None, :, :]  # (N, 1, 4), (1, M, 4)
    inter, union = _inter_union(a, b)  # (N, M)
    enclosing = _enclosing_area(a, b)  # (N, M)
    return inter / union - (enclosing - union) / enclosing


def elementwise_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of corresponding boxes: (..., 4), (..., 4) -> (...,) (the diagonal of :func:`box_iou`)."""
    inter, union = _inter_union(boxes1, boxes2)
    return inter / union


def elementwise_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU of corresponding boxes: (..., 4), (..., 4) -> (...,); what DETR's GIoU loss uses."""
    inter, union = _inter_union(boxes1, boxes2)
    enclosing = _enclosing_area(boxes1, boxes2)
    return inter / union - (enclosing - union) / enclosing


__all__ = [
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_xyxy_to_xywh",
    "elementwise_box_iou",
    "elementwise_generalized_box_iou",
    "generalized_box_iou",
]
