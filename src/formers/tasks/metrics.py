"""Evaluation metrics of the tasks: sacreBLEU for translation, accuracy / macro F1 and entity F1 for classification,
COCO AP for detection (through ``pycocotools``: the reference evaluator, no hand-written AP).

COCO AP is averaged over IoU thresholds 0.50:0.05:0.95 (COCO's primary metric), AP50 and AP75 at one threshold, and
AP small / medium / large over objects below 32x32, between, and above 96x96 pixels of annotated ``area``; at most
100 detections per image. pycocotools reports -1 where a value is undefined (no ground truth in that area range),
kept as is here.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

import numpy as np
import sacrebleu


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """sacreBLEU (13a tokenization, detokenized inputs) of hypotheses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses for {len(references)} references")
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def accuracy_and_macro_f1(predictions: Sequence[int], targets: Sequence[int], num_labels: int) -> dict[str, float]:
    """Accuracy and macro F1 (classes absent from both predictions and targets are left out of the mean)."""
    pred = np.asarray(predictions, dtype=np.int64)
    gold = np.asarray(targets, dtype=np.int64)
    if pred.shape != gold.shape or pred.size == 0:
        raise ValueError(f"need as many predictions as targets (at least 1), got {pred.size} and {gold.size}")
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(confusion, (gold, pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(num_labels), where=present)
    return {"accuracy": float(tp.sum() / gold.size), "macro_f1": float(f1[present].mean())}


def is_bio(labels: Sequence[str]) -> bool:
    """Whether every tag is ``O`` or starts with ``B-`` / ``I-`` (an IOB/IOB2 entity scheme)."""
    return all(t == "O" or t.startswith(("B-", "I-")) for t in labels)


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities ``(type, start, end)`` of a BIO tag sequence, as conlleval reads it (an ``I-`` after ``O`` or after
    another type starts an entity)."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, this = tag.partition("-")
        ends = prefix in ("O", "B") or (prefix == "I" and this != kind)
        if start is not None and ends:
            spans.add((kind, start, i))
            start, kind = None, None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = i, this
    return spans


def entity_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 over sentences (exact span and type match)."""
    tp = n_pred = n_gold = 0
    for p, g in zip(predicted, gold, strict=True):
        ps, gs = entity_spans(p), entity_spans(g)
        tp += len(ps & gs)
        n_pred += len(ps)
        n_gold += len(gs)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1}


COCO_METRIC_NAMES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100",
                     "ar_small", "ar_medium", "ar_large")


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
        The twelve COCO numbers under :data:`COCO_METRIC_NAMES`, as fractions in [0, 1] (or -1 where undefined).
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
        return {name: -1.0 for name in COCO_METRIC_NAMES}  # nothing to find: undefined, as pycocotools says
    if not results:
        return {name: 0.0 for name in COCO_METRIC_NAMES}
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
    return {name: float(value) for name, value in zip(COCO_METRIC_NAMES, evaluator.stats)}
