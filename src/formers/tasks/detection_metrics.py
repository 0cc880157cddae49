"""COCO detection metrics through ``pycocotools`` (the reference evaluator; no hand-written AP).

AP is averaged over IoU thresholds 0.50:0.05:0.95 (COCO's primary metric), AP50 and AP75 at one threshold, and
AP small / medium / large over objects below 32x32, between, and above 96x96 pixels of annotated ``area``; at most
100 detections per image. pycocotools reports -1 where a value is undefined (no ground truth in that area range),
kept as is here.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Sequence

import numpy as np

METRIC_NAMES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100", "ar_small",
                "ar_medium", "ar_large")


def coco_evaluate(
    ground_truth: dict, results: list[dict], iou_thresholds: Sequence[float] | None = None
) -> dict[str, float]:
    """Evaluates COCO-format detections against COCO-format ground truth with ``pycocotools``' ``COCOeval``.

    Args:
        ground_truth: a COCO dataset dict (``images``, ``annotations`` with ``bbox`` [x, y, w, h], ``area``,
            ``iscrowd``, ``category_id``; ``categories``).
        results: detection records (``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``score``).
        iou_thresholds: IoU thresholds to average AP over instead of COCO's 0.50:0.05:0.95 (``ap`` is then their
            mean; ``ap50``/``ap75`` are -1 unless 0.5/0.75 are among them).

    Returns:
        The twelve COCO numbers under :data:`METRIC_NAMES`, as fractions in [0, 1] (or -1 where undefined).
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ImportError("COCO evaluation needs pycocotools: pip install 'formers[detection]'") from None
    gt_images = {image["id"] for image in ground_truth.get("images", [])}
    unknown = sorted({r["image_id"] for r in results} - gt_images)
    if unknown:
        raise ValueError(f"detections name image ids {unknown[:5]} that the ground truth does not hold")
    if not ground_truth.get("annotations"):
        return {name: -1.0 for name in METRIC_NAMES}  # nothing to find: undefined, as pycocotools says
    if not results:
        return {name: 0.0 for name in METRIC_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(ground_truth)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        if iou_thresholds is not None:
            evaluator.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}


__all__ = ["METRIC_NAMES", "coco_evaluate"]
