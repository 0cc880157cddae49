"""Turning DETR's set predictions into detections: scores, labels and boxes in image pixels.

DETR needs no non-maximum suppression: each query predicts one object or "no object". A query's score is its
highest class probability among the real classes (softmax over ``num_classes + 1``, the no-object probability left
out), as facebookresearch/detr's ``PostProcess`` and Hugging Face's ``post_process_object_detection`` compute it;
COCO evaluation keeps every query, display keeps those above a threshold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from formers.data.detection_loader import (
    DetectionPreprocessing,
    collate_detection,
    normalize_padded,
)
from formers.layers import value_checks
from formers.layers.boxes import box_cxcywh_to_xyxy, box_xyxy_to_xywh
from formers.models.detr import class_probabilities


@dataclass
class Detections:
    """The detections of one image, on the host.

    Attributes:
        scores: (N,) probabilities, highest first.
        labels: (N,) class indices in [0, num_classes).
        boxes: (N, 4) corners (x0, y0, x1, y1) in the image's pixels.
        queries: (N,) the object query each detection came from (None when unknown), e.g. to show its attention.
    """

    scores: Tensor
    labels: Tensor
    boxes: Tensor
    queries: Tensor | None = None

    def __len__(self) -> int:
        return self.scores.shape[0]

    def nms(self, iou: float) -> Detections:
        """The detections left by class-wise non-maximum suppression at ``iou`` (torchvision's ``batched_nms``):
        what anchor-based detectors need and DETR should not (paper sec. 4, Table 2)."""
        from torchvision.ops import batched_nms

        keep = batched_nms(self.boxes.float(), self.scores.float(), self.labels, iou)  # sorted by score
        queries = self.queries[keep] if self.queries is not None else None
        return Detections(scores=self.scores[keep], labels=self.labels[keep], boxes=self.boxes[keep], queries=queries)

    def to_coco(self, image_id: int, category_ids: Sequence[int] | None = None) -> list[dict]:
        """COCO result records (``image_id``, ``category_id``, ``bbox`` as [x, y, w, h], ``score``).

        Args:
            image_id: the image's COCO id.
            category_ids: COCO category id of each label (default: the label itself).
        """
        xywh = box_xyxy_to_xywh(self.boxes).tolist()
        labels = self.labels.tolist()
        return [
            {"image_id": image_id, "category_id": int(category_ids[c]) if category_ids is not None else int(c),
             "bbox": [round(v, 3) for v in box], "score": round(float(s), 6)}
            for box, c, s in zip(xywh, labels, self.scores.tolist())
        ]

    def to_records(self, class_names: Sequence[str] | None = None) -> list[dict]:
        """One dict per detection: ``label`` (index), ``name`` (when ``class_names`` are given), ``score`` and
        ``box`` [x0, y0, x1, y1] in pixels."""
        out = []
        for box, c, s in zip(self.boxes.tolist(), self.labels.tolist(), self.scores.tolist()):
            record = {"label": int(c), "score": round(float(s), 4), "box": [round(v, 2) for v in box]}
            if class_names is not None:
                record["name"] = class_names[c]
            out.append(record)
        return out


@torch.no_grad()
def postprocess(
    logits: Tensor, boxes: Tensor, image_sizes: Sequence[Sequence[int]] | Tensor, threshold: float = 0.0,
    class_scores: str = "softmax",
) -> list[Detections]:
    """Scores, labels and pixel boxes of every image, sorted by score; one transfer to the host for the batch.

    Args:
        logits: (B, Q, K + 1) class scores, the last being "no object".
        boxes: (B, Q, 4) normalised (cx, cy, w, h), relative to each image's real size.
        image_sizes: (B, 2) (height, width) in pixels of the images the boxes should be expressed in (the
            annotated originals, whatever the model saw).
        threshold: keep detections whose score is above it (0 keeps every query).
        class_scores: how the model scores classes (its config's ``class_scores``): ``"softmax"`` over the K + 1
            labels, the no-object probability left out, or ``"sigmoid"`` per class.

    Returns:
        B :class:`Detections`.
    """
    if logits.dim() != 3 or boxes.shape[:2] != logits.shape[:2] or boxes.shape[-1] != 4:
        raise ValueError(f"logits (B, Q, K + 1) and boxes (B, Q, 4) must agree, got {tuple(logits.shape)} and "
                         f"{tuple(boxes.shape)}")
    sizes = torch.as_tensor(image_sizes, dtype=torch.float32, device=logits.device)
    if sizes.shape != (logits.shape[0], 2):
        raise ValueError(f"image_sizes must hold (height, width) for each of the {logits.shape[0]} images, "
                         f"got shape {tuple(sizes.shape)}")
    prob = class_probabilities(logits, class_scores)  # (B, Q, K)
    scores, labels = prob.max(-1)  # (B, Q)
    scale = sizes.flip(-1).repeat(1, 2)[:, None]  # (B, 2) (h, w) -> (B, 1, 4) (w, h, w, h)
    pixels = box_cxcywh_to_xyxy(boxes.float()) * scale  # (B, Q, 4)
    scores, labels, pixels = scores.cpu(), labels.cpu(), pixels.cpu()
    out = []
    for s, c, b in zip(scores, labels, pixels):
        keep = (s > threshold).nonzero().squeeze(1) if threshold > 0 else torch.arange(s.shape[0])
        order = keep[s[keep].argsort(descending=True, stable=True)]
        out.append(Detections(scores=s[order], labels=c[order], boxes=b[order], queries=order))
    return out


def class_scores_of(model: nn.Module) -> str:
    """How ``model`` scores classes: its config's ``class_scores`` (``"softmax"`` when it has none)."""
    return getattr(getattr(model, "config", None), "class_scores", "softmax")


class Detector:
    """Detects objects in images with a trained detection model and its preprocessing.

    Images of any size are resized as at evaluation (``preprocessing.size`` / ``max_size``), batched with padding,
    normalised, and their boxes returned in the pixels of the images given.

    Args:
        model: a detection model (``model(images, padding_mask)`` -> ``.logits``, ``.boxes``), put in eval mode.
        preprocessing: the checkpoint's :class:`~formers.data.detection_loader.DetectionPreprocessing`.
        batch_size: images per forward pass.
    """

    def __init__(self, model: nn.Module, preprocessing: DetectionPreprocessing, batch_size: int = 8) -> None:
        num_classes = getattr(getattr(model, "config", None), "num_classes", None)
        if num_classes != len(preprocessing.class_names):
            raise ValueError(f"the model has num_classes={num_classes}, its preprocessing names "
                             f"{len(preprocessing.class_names)} classes")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.preprocessing, self.batch_size = model.eval(), preprocessing, batch_size
        self._transform = preprocessing.transform()

    @classmethod
    def from_checkpoint(cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu",
                        batch_size: int = 8) -> Detector:
        """Loads the model and ``preprocessing.json`` of a checkpoint (or run) directory."""
        from formers.hub import from_pretrained, resolve_checkpoint_dir

        directory = resolve_checkpoint_dir(directory)
        preprocessing = DetectionPreprocessing.load(directory)
        return cls(from_pretrained(directory, device=device), preprocessing, batch_size)

    @torch.no_grad()
    def __call__(self, images: Sequence[Tensor], threshold: float = 0.5) -> list[Detections]:
        """Detections (scores above ``threshold``) of each (3, H, W) uint8 image, in its own pixels."""
        out: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            pixels, mask, sizes = self.inputs(images[start : start + self.batch_size])
            with value_checks(False):
                output = self.model(pixels, mask)
            out += postprocess(output.logits, output.boxes, sizes, threshold, class_scores_of(self.model))
        return out

    def inputs(self, images: Sequence[Tensor]) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        """The model's inputs for (3, H, W) uint8 images: resized, padded and normalised pixels (B, 3, H', W') and
        their padding mask (B, H', W') on the model's device, and each image's (height, width)."""
        from torchvision import tv_tensors

        device = next(self.model.parameters()).device
        samples = []
        for image in images:
            if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
                raise ValueError(f"images must be (3, H, W) uint8 RGB tensors, got {image.dtype} "
                                 f"{tuple(image.shape)}")
            resized = self._transform(tv_tensors.Image(image)).as_subclass(Tensor)
            samples.append({"image": resized, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                            "image_id": 0, "orig_size": tuple(image.shape[1:])})
        batch = collate_detection(samples)
        mask = batch["padding_mask"].to(device)
        pixels = normalize_padded(batch["images"].to(device), mask, self.preprocessing.mean, self.preprocessing.std)
        return pixels, mask, batch["orig_sizes"]


__all__ = ["Detections", "Detector", "class_scores_of", "postprocess"]
