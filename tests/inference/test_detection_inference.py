"""DETR post-processing (against Hugging Face's) and the Detector on images of any size."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchvision")

from formers.data.detection_loader import DetectionPreprocessing  # noqa: E402
from formers.inference.detection import Detector, postprocess  # noqa: E402
from formers.models.detr import DETR, DETRConfig  # noqa: E402


def test_postprocess_equals_hugging_faces():
    detr = pytest.importorskip("transformers.models.detr.image_processing_detr")
    from transformers.models.detr.modeling_detr import DetrObjectDetectionOutput

    g = torch.Generator().manual_seed(0)
    logits, boxes = torch.randn(2, 12, 5, generator=g) * 3, torch.rand(2, 12, 4, generator=g) * 0.5 + 0.2
    sizes = [(480, 640), (100, 50)]
    ours = postprocess(logits, boxes, sizes, threshold=0.3)
    theirs = detr.DetrImageProcessor().post_process_object_detection(
        DetrObjectDetectionOutput(logits=logits, pred_boxes=boxes), threshold=0.3, target_sizes=sizes)
    for o, t in zip(ours, theirs):
        order = t["scores"].argsort(descending=True)
        assert len(o) == len(order) > 0
        torch.testing.assert_close(o.scores, t["scores"][order])
        torch.testing.assert_close(o.labels, t["labels"][order])
        torch.testing.assert_close(o.boxes, t["boxes"][order])
    assert [len(d) for d in postprocess(logits, boxes, sizes)] == [12, 12]  # no threshold: every query
    with pytest.raises(ValueError, match="image_sizes"):
        postprocess(logits, boxes, [(10, 10)])


def test_sigmoid_models_score_each_class_by_its_sigmoid_and_the_detector_asks_the_model():
    g = torch.Generator().manual_seed(1)
    logits, boxes = torch.randn(1, 6, 4, generator=g) * 3, torch.rand(1, 6, 4, generator=g) * 0.5 + 0.2
    dets = postprocess(logits, boxes, [(50, 60)], class_scores="sigmoid")[0]
    best, label = logits[0, :, :-1].sigmoid().max(-1)  # the unused no-object logit plays no part
    order = best.argsort(descending=True)
    torch.testing.assert_close(dets.scores, best[order])
    assert dets.labels.tolist() == label[order].tolist()
    model = DETR(DETRConfig(num_classes=2, backbone_block="basic", backbone_depths=[1], backbone_width=8, embed_dim=16,
                            num_heads=2, ffn_dim=16, num_encoder_layers=1, num_decoder_layers=1, num_queries=3,
                            class_scores="sigmoid")).eval()
    prep = DetectionPreprocessing(["a", "b"], [1, 2], [0.5] * 3, [0.25] * 3, None, 64)
    out = Detector(model, prep)([torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8)], threshold=0.0)[0]
    assert (out.scores < 0.05).all()  # the focal prior: every class starts at probability 0.01
    from formers.interop.detr import hf_detr_config_from_formers

    with pytest.raises(ValueError, match="class_scores='sigmoid'"):
        hf_detr_config_from_formers(model.config)


def test_coco_records_and_readable_records():
    logits, boxes = torch.zeros(1, 2, 3), torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.25, 0.5, 0.5]]])
    logits[0, 0, 1] = 5.0
    dets = postprocess(logits, boxes, [(100, 200)])[0]
    coco = dets.to_coco(9, category_ids=[4, 8])
    assert coco[0] == {"image_id": 9, "category_id": 8, "bbox": [80.0, 30.0, 40.0, 40.0], "score": pytest.approx(
        dets.scores[0].item(), abs=1e-6)}
    assert dets.to_records(["cat", "dog"])[0]["name"] == "dog" and dets.to_records()[0]["box"] == [80.0, 30.0, 120.0, 70.0]


def test_detector_returns_boxes_in_each_images_pixels():
    torch.manual_seed(0)
    model = DETR(DETRConfig(num_classes=2, backbone_block="basic", backbone_depths=[1, 1, 1, 1], backbone_width=8,
                            embed_dim=16, num_encoder_layers=1, num_decoder_layers=1, num_heads=2, ffn_dim=32,
                            num_queries=4))
    prep = DetectionPreprocessing(["a", "b"], [1, 2], [0.5] * 3, [0.5] * 3, size=64, max_size=96)
    detector = Detector(model, prep, batch_size=2)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in [(120, 80), (50, 200), (64, 64)]]
    found = detector(images, threshold=0.0)
    assert [len(d) for d in found] == [4, 4, 4]
    for image, d in zip(images, found):
        h, w = image.shape[1:]
        assert d.boxes[:, [0, 2]].max() <= w + 1e-3 and d.boxes[:, [1, 3]].max() <= h + 1e-3
    with pytest.raises(ValueError, match="num_classes=2, its preprocessing names 3"):
        Detector(model, DetectionPreprocessing(["a", "b", "c"], [1, 2, 3], [0.5] * 3, [0.5] * 3))
    with pytest.raises(ValueError, match=r"\(3, H, W\) uint8"):
        detector([torch.rand(3, 10, 10)])


def test_preprocessing_file_round_trip(tmp_path):
    prep = DetectionPreprocessing(["a"], [3], [0.1, 0.2, 0.3], [0.4, 0.5, 0.6], size=None)
    prep.save(tmp_path)
    assert DetectionPreprocessing.load(tmp_path) == prep
    (tmp_path / "preprocessing.json").write_text('{"class_names": []}')
    with pytest.raises(ValueError, match="does not describe a detection model"):
        DetectionPreprocessing.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="needs the preprocessing.json"):
        DetectionPreprocessing.load(tmp_path / "nowhere")


def test_nms_drops_overlapping_boxes_of_a_class_only():
    from formers.inference.detection import Detections

    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    dets = Detections(torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 0, 1, 0]), boxes)
    kept = dets.nms(0.5)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7, 0.6]) and kept.labels.tolist() == [0, 1, 0]
