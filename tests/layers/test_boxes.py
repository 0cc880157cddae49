"""Box operations of ``formers.layers.boxes`` against ``torchvision.ops``."""

from __future__ import annotations

import pytest
import torch

from formers.layers import boxes as B

ops = pytest.importorskip("torchvision.ops")


def _xyxy(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g) * 50
    size = torch.rand(n, 2, generator=g) * 30 + 0.5
    return torch.cat([corner, corner + size], dim=1)  # (N, 4)


def test_format_conversions_equal_torchvision_and_invert():
    boxes = _xyxy(20)
    for ours, fmt in [(B.box_xyxy_to_cxcywh, "cxcywh"), (B.box_xyxy_to_xywh, "xywh")]:
        torch.testing.assert_close(ours(boxes), ops.box_convert(boxes, "xyxy", fmt), rtol=0, atol=1e-5)
    cxcywh, xywh = B.box_xyxy_to_cxcywh(boxes), B.box_xyxy_to_xywh(boxes)
    torch.testing.assert_close(B.box_cxcywh_to_xyxy(cxcywh), ops.box_convert(cxcywh, "cxcywh", "xyxy"), rtol=0, atol=1e-5)
    torch.testing.assert_close(B.box_xywh_to_xyxy(xywh), ops.box_convert(xywh, "xywh", "xyxy"), rtol=0, atol=1e-5)
    torch.testing.assert_close(B.box_cxcywh_to_xyxy(cxcywh), boxes, rtol=0, atol=1e-5)
    torch.testing.assert_close(B.box_xywh_to_xyxy(xywh), boxes, rtol=0, atol=1e-5)
    # Leading dimensions are kept.
    assert B.box_cxcywh_to_xyxy(cxcywh.view(4, 5, 4)).shape == (4, 5, 4)


def test_area_iou_and_giou_equal_torchvision():
    a, b = _xyxy(13, seed=1), _xyxy(7, seed=2)
    b[0] = a[0]  # an identical pair (IoU 1)
    b[1] = torch.tensor([200.0, 200.0, 210.0, 220.0])  # disjoint from everything (GIoU < 0)
    torch.testing.assert_close(B.box_area(a), ops.box_area(a))
    torch.testing.assert_close(B.box_iou(a, b), ops.box_iou(a, b))
    giou = B.generalized_box_iou(a, b)
    torch.testing.assert_close(giou, ops.generalized_box_iou(a, b))
    assert B.box_iou(a, b)[0, 0] == 1 and (giou[:, 1] < 0).all() and giou.shape == (13, 7)


def test_elementwise_versions_are_the_pairwise_diagonal():
    a, b = _xyxy(9, seed=3), _xyxy(9, seed=4)
    torch.testing.assert_close(B.elementwise_box_iou(a, b), ops.box_iou(a, b).diagonal())
    giou = B.elementwise_generalized_box_iou(a, b)
    torch.testing.assert_close(giou, ops.generalized_box_iou(a, b).diagonal())
    # torchvision's loss adds eps=1e-7 to the denominators: equal to float32 rounding.
    torch.testing.assert_close(1 - giou, ops.generalized_box_iou_loss(a, b, reduction="none"), rtol=0, atol=1e-5)


def test_dtype_is_kept():
    a = _xyxy(3).double()
    assert B.generalized_box_iou(a, a).dtype == torch.float64
    assert B.box_xyxy_to_cxcywh(a.half()).dtype == torch.float16
