"""COCO AP through pycocotools: the detection-metrics fixture's published numbers, and AP independent of the
evaluation batch size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("pycocotools")
pytest.importorskip("torchvision")

from formers.data.detection import DetectionDataset, DetectionImage  # noqa: E402
from formers.data.detection_loader import DetectionLoader, eval_transform  # noqa: E402
from formers.inference.detection import Detections  # noqa: E402
from formers.layers.boxes import box_xywh_to_xyxy  # noqa: E402
from formers.models.detr import DETR, DETRConfig  # noqa: E402
from formers.tasks.detection import DetectionTask  # noqa: E402
from formers.tasks.metrics import COCO_METRIC_NAMES, coco_evaluate  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "detection_metrics"
PERSON_ID = 7  # a non-contiguous COCO category id for the fixture's only class


def _fixture() -> tuple[dict, list[dict]]:
    """The fixture's ground truth through DetectionDataset.to_coco and its detections through Detections.to_coco
    (both from corner boxes), so the box and id conversions around the evaluator are what is tested."""
    images, results = [], []
    for k, gt_file in enumerate(sorted((FIXTURE / "groundtruths").glob("*.txt")), start=1):
        rows = [line.split() for line in gt_file.read_text().splitlines() if line.strip()]
        xywh = torch.tensor([[float(v) for v in r[1:]] for r in rows])
        boxes = box_xywh_to_xyxy(xywh)
        images.append(DetectionImage(k, 1000, 1000, boxes, torch.zeros(len(rows), dtype=torch.long),
                                     torch.zeros(len(rows), dtype=torch.bool), xywh[:, 2] * xywh[:, 3]))
        det = [line.split() for line in (FIXTURE / "detections" / gt_file.name).read_text().splitlines() if line.strip()]
        scores = torch.tensor([float(r[1]) for r in det])
        det_boxes = box_xywh_to_xyxy(torch.tensor([[float(v) for v in r[2:]] for r in det]))
        results += Detections(scores, torch.zeros(len(det), dtype=torch.long), det_boxes).to_coco(k, [PERSON_ID])
    dataset = DetectionDataset(images, ["person"], [PERSON_ID])
    return dataset.to_coco(), results


def test_fixture_gives_its_published_coco_ap():
    ground_truth, results = _fixture()
    assert len(ground_truth["annotations"]) == 15 and len(results) == 24
    # The fixture's README: COCO-style AP 0.230080 at IoU 0.3 and 0.023102 at IoU 0.5 (pycocotools, faster-coco-eval
    # and torchmetrics agreeing).
    at_03 = coco_evaluate(ground_truth, results, iou_thresholds=[0.3])
    assert at_03["ap"] == pytest.approx(0.230080, abs=5e-7)
    standard = coco_evaluate(ground_truth, results)
    assert standard["ap50"] == pytest.approx(0.023102, abs=5e-7)
    assert set(standard) == set(COCO_METRIC_NAMES) and 0 <= standard["ap"] <= standard["ap50"]


def test_empty_and_inconsistent_inputs():
    ground_truth, results = _fixture()
    assert coco_evaluate(ground_truth, [])["ap"] == 0.0
    assert coco_evaluate({**ground_truth, "annotations": []}, results)["ap"] == -1.0
    with pytest.raises(ValueError, match=r"image ids \[99\]"):
        coco_evaluate(ground_truth, [{**results[0], "image_id": 99}])


def _eval_set() -> DetectionDataset:
    g = torch.Generator().manual_seed(0)
    images = []
    for k, (h, w) in enumerate([(64, 96), (96, 64), (80, 80), (64, 64), (96, 96)], start=1):
        pixels = (torch.rand(3, h, w, generator=g) * 255).to(torch.uint8)
        xy = torch.rand(3, 2, generator=g) * 30
        boxes = torch.cat([xy, xy + 10 + torch.rand(3, 2, generator=g) * 20], dim=1)
        labels = torch.randint(0, 3, (3,), generator=g)
        images.append(DetectionImage(k, w, h, boxes, labels, torch.zeros(3, dtype=torch.bool),
                                     (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), None, pixels))
    return DetectionDataset(images, ["a", "b", "c"], [2, 5, 11])


def test_same_weights_give_the_same_ap_whatever_the_eval_batch_size():
    torch.manual_seed(0)
    model = DETR(DETRConfig(num_classes=3, backbone_block="basic", backbone_depths=[1, 1, 1, 1], backbone_width=8,
                            embed_dim=32, num_encoder_layers=1, num_decoder_layers=2, num_heads=4, ffn_dim=64,
                            num_queries=30)).eval()
    with torch.no_grad():  # spread the random predictions over the image and the classes
        model.box_head.layers[-1].weight.mul_(20)
        model.class_head.weight.mul_(10)
    task = DetectionTask(3, mean=[0.5] * 3, std=[0.25] * 3, category_ids=[2, 5, 11])
    transform = eval_transform(64, 96)
    # Ground truth: the three most confident predictions of each image, moved by a pixel, so that AP is well
    # away from 0 and depends on the exact scores and boxes.
    dataset = _eval_set()
    records = [r for batch in DetectionLoader(dataset, 1, transform, train=False) for r in task.predict(model, batch)]
    for image in dataset.images:
        top = sorted((r for r in records if r["image_id"] == image.image_id), key=lambda r: -r["score"])[:3]
        image.boxes = box_xywh_to_xyxy(torch.tensor([r["bbox"] for r in top])) + 1.0
        image.labels = torch.tensor([[2, 5, 11].index(r["category_id"]) for r in top])
        image.area = (image.boxes[:, 2] - image.boxes[:, 0]) * (image.boxes[:, 3] - image.boxes[:, 1])
    metrics = [task.evaluate(model, DetectionLoader(dataset, b, transform, train=False)) for b in (1, 2, 5)]
    assert 0.2 < metrics[0]["ap"] < 1.0
    assert metrics[0] == metrics[1] == metrics[2]
    with pytest.raises(ValueError, match=r"category ids \[0, 1, 2\], the ground truth defines \[2, 5, 11\]"):
        DetectionTask(3, mean=[0.5] * 3, std=[0.25] * 3).evaluate(model, DetectionLoader(dataset, 5, transform, train=False))
