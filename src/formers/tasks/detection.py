"""Object detection as set prediction (DETR, Carion et al. 2020): Hungarian matching, the set criterion, COCO AP.

Each image's ground-truth boxes are matched one-to-one to the model's queries by the assignment of least cost
(class 1, L1 5, generalized IoU 2, paper sec. 3.1); unmatched queries are trained towards "no object". The loss is
cross-entropy over ``num_classes + 1`` labels (the no-object class weighted 0.1) plus L1 (weight 5) and GIoU (weight 2)
on the matched boxes, normalised by the number of ground-truth boxes, summed over the final and every auxiliary
decoder layer (each with its own matching), as facebookresearch/detr and Hugging Face's ``ForObjectDetectionLoss``
compute it (tests/tasks/test_detection.py checks both against the latter).

Speed: the cost matrices of every decoder layer and every image are computed at once on the device, in float32
even under autocast, and cross to the host in one transfer; ``scipy.optimize.linear_sum_assignment`` then solves
each (queries x boxes) block, and the matched indices go back in one transfer. The losses of all layers are computed
together. Nothing else in a training step reads the device.

Batches (from :func:`formers.data.detection_loader.collate_detection`) are dicts: ``images`` (B, C, H, W) uint8
padded at the bottom/right, ``padding_mask`` (B, H, W) bool (True = real pixel), ``labels`` (T,) int64 and ``boxes``
(T, 4) float32 normalised (cx, cy, w, h) of all the batch's T boxes, image after image, ``sizes`` (list of B ints:
boxes per image), and for evaluation ``image_ids`` (B ints) and ``orig_sizes`` (B (height, width) pairs of the
annotated images).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.data.detection import read_coco
from formers.data.detection_loader import (
    DetectionLoader,
    DetectionPreprocessing,
    normalize_padded,
)
from formers.devices import move_to_device
from formers.hub import from_pretrained, resolve_checkpoint_dir
from formers.inference.detection import class_scores_of, postprocess
from formers.layers import value_checks
from formers.layers.boxes import (
    box_cxcywh_to_xyxy,
    elementwise_generalized_box_iou,
    generalized_box_iou,
)
from formers.models.outputs import DetectionOutput
from formers.tasks.metrics import coco_evaluate
from formers.training.task import StepOutput


@dataclass
class Matching:
    """Matched (prediction, ground truth) pairs of a stack of decoder layers, as flat index tensors (M,).

    Attributes:
        layer: decoder layer of each pair (0 = the first stacked layer).
        image: image in the batch.
        query: query index in [0, Q).
        target: index into the batch's concatenated ground-truth boxes (T,).
    """

    layer: Tensor
    image: Tensor
    query: Tensor
    target: Tensor


class HungarianMatcher:
    """One-to-one assignment of ground-truth boxes to queries by least cost (paper eq. 1).

    The cost of predicting box j for query i is ``class_cost * -p_i(c_j) + box_cost * L1(b_i, b_j) + giou_cost *
    -GIoU(b_i, b_j)``, boxes in normalised (cx, cy, w, h) (GIoU on their corners).

    With ``focal`` (models whose ``class_scores`` is ``"sigmoid"``), the class term is Deformable DETR's: the focal
    loss of calling query i class c_j minus that of calling it not c_j, ``alpha (1 - p)^gamma (-log p) - (1 - alpha)
    p^gamma (-log(1 - p))`` with ``p`` the sigmoid of class c_j.

    Args:
        class_cost: weight of the class probability.
        box_cost: weight of the L1 box distance.
        giou_cost: weight of the generalized IoU.
        focal: score classes with sigmoids and the focal cost (``alpha``, ``gamma``) instead of the softmax.
    """

    def __init__(self, class_cost: float = 1.0, box_cost: float = 5.0, giou_cost: float = 2.0, focal: bool = False,
                 alpha: float = 0.25, gamma: float = 2.0) -> None:
        if min(class_cost, box_cost, giou_cost) < 0 or class_cost == box_cost == giou_cost == 0:
            raise ValueError(
                f"matching costs must be >= 0 and not all 0, got class {class_cost}, box {box_cost}, giou {giou_cost}"
            )
        self.class_cost, self.box_cost, self.giou_cost = class_cost, box_cost, giou_cost
        self.focal, self.alpha, self.gamma = focal, alpha, gamma

    @torch.no_grad()
    def cost_matrix(self, logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor) -> Tensor:
        """Costs (L, B, Q, T) of every query against every box of the batch, float32 on the device.

        Args:
            logits: (L, B, Q, K + 1) class scores of L stacked decoder layers.
            boxes: (L, B, Q, 4) predicted normalised (cx, cy, w, h).
            labels: (T,) ground-truth classes of the whole batch.
            target_boxes: (T, 4) ground-truth normalised (cx, cy, w, h).
        """
        with torch.autocast(logits.device.type, enabled=False):
            pred = boxes.float()
            target = target_boxes.float()
            if self.focal:
                prob = logits.float()[..., labels].sigmoid()  # (L, B, Q, T)
                positive = self.alpha * (1 - prob) ** self.gamma * -(prob + 1e-8).log()
                negative = (1 - self.alpha) * prob**self.gamma * -(1 - prob + 1e-8).log()
                cost_class = positive - negative
            else:
                cost_class = -logits.float().softmax(-1)[..., labels]  # (L, B, Q, T)
            cost_box = torch.cdist(pred.flatten(0, 2), target, p=1).view(*pred.shape[:3], -1)  # (L*B*Q, T) -> (L, B, Q, T)
            giou = generalized_box_iou(box_cxcywh_to_xyxy(pred.flatten(0, 2)), box_cxcywh_to_xyxy(target))
            cost = (self.class_cost * cost_class + self.box_cost * cost_box
                    - self.giou_cost * giou.view(*pred.shape[:3], -1))  # (L*B*Q, T) -> (L, B, Q, T)
            # Degenerate predictions (NaN, inf) are matched only when nothing else is left.
            big = torch.finfo(cost.dtype).max
            return torch.nan_to_num(cost, nan=big, posinf=big, neginf=big)

    @torch.no_grad()
    def __call__(self, logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor, sizes: list[int]) -> Matching:
        """Matches every stacked decoder layer of every image.

        Args:
            logits: (L, B, Q, K + 1) or (B, Q, K + 1) (then L = 1).
            boxes: (L, B, Q, 4) or (B, Q, 4).
            labels: (T,) classes of all images' boxes, image after image.
            target_boxes: (T, 4) normalised (cx, cy, w, h).
            sizes: boxes per image (B ints summing to T), known on the host.

        Returns:
            The :class:`Matching`, on the predictions' device; min(Q, n_b) pairs per layer and image b.
        """
        if logits.dim() == 3:
            logits, boxes = logits[None], boxes[None]  # (B, Q, K + 1) -> (1, B, Q, K + 1)
        num_layers, batch, num_queries = logits.shape[:3]
        if len(sizes) != batch or sum(sizes) != labels.shape[0]:
            raise ValueError(f"sizes {sizes} must give the box count of each of the {batch} images, summing to "
                             f"the {labels.shape[0]} labels")
        device = logits.device
        if labels.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return Matching(empty, empty, empty, empty)
        cost = self.cost_matrix(logits, boxes, labels, target_boxes).cpu().numpy()  # the one device -> host transfer
        offsets = np.cumsum([0, *sizes])
        index: list[list[np.ndarray]] = [[], [], [], []]
        for layer in range(num_layers):
            for b in range(batch):
                start, stop = offsets[b], offsets[b + 1]
                if start == stop:
                    continue
                queries, targets = _linear_sum_assignment(cost[layer, b, :, start:stop])
                for store, values in zip(index, (np.full_like(queries, layer), np.full_like(queries, b), queries,
                                                 targets + start)):
                    store.append(values)
        flat = torch.from_numpy(np.stack([np.concatenate(v) for v in index]).astype(np.int64))  # (4, M)
        flat = flat.to(device, non_blocking=True)  # the one host -> device transfer
        return Matching(*flat.unbind(0))


def _linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.int64), cols.astype(np.int64)


@dataclass
class LossWeights:
    """Weights of the set criterion (the paper's): cross-entropy (or the focal loss), L1 box distance, generalized IoU,
    no-object class (cross-entropy only); the focal loss's ``alpha`` and ``gamma`` (Deformable DETR's)."""

    ce: float = 1.0
    l1: float = 5.0
    giou: float = 2.0
    no_object: float = 0.1
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


class SetCriterion:
    """DETR's loss: matching, then class, L1 and GIoU losses for the final and every auxiliary decoder layer.

    Args:
        num_classes: K (labels 0..K-1; K is "no object").
        matcher: the :class:`HungarianMatcher`.
        weights: the :class:`LossWeights`.
        aux_loss: add the losses of the auxiliary (intermediate) decoder layers.
        class_scores: the model's (``"softmax"``: cross-entropy over K + 1 labels; ``"sigmoid"``: Deformable DETR's
            sigmoid focal loss over the K classes, summed over queries and classes and divided by the number of
            boxes, the no-object logit unused; the matcher must then be ``focal``).
    """

    def __init__(self, num_classes: int, matcher: HungarianMatcher | None = None, weights: LossWeights | None = None,
                 aux_loss: bool = True, class_scores: str = "softmax") -> None:
        if class_scores not in ("softmax", "sigmoid"):
            raise ValueError(f"class_scores must be 'softmax' or 'sigmoid', got {class_scores!r}")
        self.num_classes = num_classes
        self.weights = weights or LossWeights()
        self.matcher = matcher or HungarianMatcher(focal=class_scores == "sigmoid", alpha=self.weights.focal_alpha,
                                                   gamma=self.weights.focal_gamma)
        if self.matcher.focal != (class_scores == "sigmoid"):
            raise ValueError(f"class_scores={class_scores!r} needs a matcher with focal={class_scores == 'sigmoid'}, "
                             f"got focal={self.matcher.focal}")
        self.aux_loss = aux_loss
        self.class_scores = class_scores

    def __call__(self, output: DetectionOutput, labels: Tensor, boxes: Tensor, sizes: list[int]) -> tuple[Tensor, dict[str, Tensor]]:
        """The total loss (float32 scalar) and its parts for logging.

        Args:
            output: the model's predictions (``logits`` (B, Q, K + 1), ``boxes`` (B, Q, 4), ``aux_outputs``).
            labels: (T,) ground-truth classes of the batch, image after image.
            boxes: (T, 4) normalised (cx, cy, w, h).
            sizes: boxes per image (B host ints).

        Returns:
            ``(loss, parts)``; ``parts`` holds the final layer's ``loss_ce``, ``loss_bbox``, ``loss_giou`` and
            ``cardinality_error`` (absolute error of the number of predicted objects) and the auxiliary layers' sum
            ``loss_aux``.
        """
        layers = [*output.aux_outputs, output] if self.aux_loss else [output]
        logits = torch.stack([o.logits for o in layers]).float()  # (L, B, Q, K + 1), the last layer last
        pred_boxes = torch.stack([o.boxes for o in layers]).float()  # (L, B, Q, 4)
        if logits.shape[-1] != self.num_classes + 1:
            raise ValueError(f"logits score {logits.shape[-1]} labels, the criterion expects num_classes + 1 = "
                             f"{self.num_classes + 1}")
        if output.query_groups > 1:  # Group DETR: each group is one more image with the same boxes
            logits, pred_boxes, labels, boxes, sizes = _split_groups(output.query_groups, logits, pred_boxes, labels,
                                                                     boxes, sizes)
        num_layers, batch, num_queries, num_labels = logits.shape
        match = self.matcher(logits, pred_boxes, labels, boxes, sizes)
        num_boxes = _num_boxes(sum(sizes), logits.device)
        w = self.weights

        if self.class_scores == "sigmoid":
            # torchvision: the detection extra, not the core install
            from torchvision.ops import sigmoid_focal_loss

            onehot = torch.zeros_like(logits[..., :-1])  # (L, B, Q, K): 1 at each matched query's class
            onehot[match.layer, match.image, match.query, labels[match.target]] = 1.0
            focal = sigmoid_focal_loss(logits[..., :-1], onehot, w.focal_alpha, w.focal_gamma)  # (L, B, Q, K)
            loss_ce = focal.flatten(1).sum(-1) / num_boxes  # (L,)
        else:
            classes = torch.full((num_layers, batch, num_queries), self.num_classes, dtype=torch.long,
                                 device=logits.device)
            classes[match.layer, match.image, match.query] = labels[match.target]
            class_weight = torch.ones(num_labels, device=logits.device)
            class_weight[-1] = w.no_object
            nll = F.cross_entropy(logits.flatten(0, 2), classes.flatten(), weight=class_weight,
                                  reduction="none")  # (L*B*Q,)
            # Per layer, the weighted mean of PyTorch's cross_entropy(weight=...): sum(w * nll) / sum(w).
            loss_ce = nll.view(num_layers, -1).sum(-1) / class_weight[classes].view(num_layers, -1).sum(-1)  # (L,)

        matched = pred_boxes[match.layer, match.image, match.query]  # (M, 4)
        target = boxes[match.target].float()  # (M, 4)
        per_layer = torch.zeros(3, num_layers, device=logits.device)  # L1, GIoU sums per layer
        per_layer[0].index_add_(0, match.layer, (matched - target).abs().sum(-1))
        giou = elementwise_generalized_box_iou(box_cxcywh_to_xyxy(matched), box_cxcywh_to_xyxy(target))
        per_layer[1].index_add_(0, match.layer, 1 - giou)
        loss_bbox, loss_giou = per_layer[0] / num_boxes, per_layer[1] / num_boxes  # (L,)

        total = w.ce * loss_ce + w.l1 * loss_bbox + w.giou * loss_giou  # (L,)
        with torch.no_grad():
            if self.class_scores == "sigmoid":  # a query predicts an object when a class is more likely than not
                predicted = (logits[-1, ..., :-1].max(-1).values > 0).sum(-1).float()  # (B,)
            else:
                predicted = (logits[-1].argmax(-1) != self.num_classes).sum(-1).float()  # (B,)
            cardinality = (predicted - torch.tensor(sizes, device=logits.device, dtype=torch.float)).abs().mean()
        parts = {"loss_ce": loss_ce[-1].detach(), "loss_bbox": loss_bbox[-1].detach(),
                 "loss_giou": loss_giou[-1].detach(), "loss_aux": total[:-1].sum().detach(),
                 "cardinality_error": cardinality}
        return total.sum(), parts


def _split_groups(groups: int, logits: Tensor, pred_boxes: Tensor, labels: Tensor, boxes: Tensor,
                  sizes: list[int]) -> tuple[Tensor, Tensor, Tensor, Tensor, list[int]]:
    """Group DETR's predictions (L, B, G * Q, ...) as (L, B * G, Q, ...) and each image's boxes repeated for each of
    its G groups: matched and scored as separate images, the losses (divided by the G-fold box count) are the mean of
    the groups' losses."""
    num_layers, batch, total = logits.shape[:3]
    if total % groups:
        raise ValueError(f"{total} queries do not split into {groups} query groups")
    logits = logits.reshape(num_layers, batch * groups, total // groups, -1)
    pred_boxes = pred_boxes.reshape(num_layers, batch * groups, total // groups, 4)
    starts = [0, *itertools.accumulate(sizes)]
    index = [i for b, n in enumerate(sizes) for _ in range(groups) for i in range(starts[b], starts[b] + n)]
    index = torch.tensor(index, dtype=torch.long).to(labels.device, non_blocking=True)
    return logits, pred_boxes, labels[index], boxes[index], [n for n in sizes for _ in range(groups)]


def _num_boxes(count: int, device: torch.device) -> float | Tensor:
    """Ground-truth boxes per process, averaged over data-parallel processes (at least 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        total = torch.tensor(float(count), device=device)
        torch.distributed.all_reduce(total)
        return (total / torch.distributed.get_world_size()).clamp(min=1.0)
    return float(max(count, 1))


class DetectionTask:
    """Trains DETR on detection batches; evaluates COCO AP.

    Args:
        num_classes: K.
        mean: per-channel pixel mean (of 0..1 pixels) used to normalise images.
        std: per-channel pixel standard deviation.
        criterion: the :class:`SetCriterion` (default: the paper's weights, auxiliary losses on).
        category_ids: COCO category id of each label (evaluation writes results with them; default: the label).
    """

    throughput_unit = "img"  # what StepOutput.num_tokens counts, in progress lines

    def __init__(self, num_classes: int, mean: list[float], std: list[float], criterion: SetCriterion | None = None,
                 category_ids: list[int] | None = None) -> None:
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean and std need one value per channel and std > 0, got {mean} and {std}")
        self.num_classes = num_classes
        self.mean, self.std = list(mean), list(std)
        self.criterion = criterion or SetCriterion(num_classes)
        self.category_ids = list(category_ids) if category_ids is not None else list(range(num_classes))
        if len(self.category_ids) != num_classes:
            raise ValueError(f"category_ids needs {num_classes} entries (one per label), got {len(self.category_ids)}")

    def prepare(self, images: Tensor, padding_mask: Tensor) -> Tensor:
        """(B, C, H, W) uint8 -> normalised float pixels, zero on the padding (as DETR pads normalised images)."""
        return normalize_padded(images, padding_mask, self.mean, self.std)

    def training_step(self, model: nn.Module, batch: dict) -> StepOutput:
        """Forward pass on the padded batch, then the set criterion."""
        images = self.prepare(batch["images"], batch["padding_mask"])
        with value_checks(False):
            output = model(images, batch["padding_mask"])
        loss, parts = self.criterion(output, batch["labels"], batch["boxes"], batch["sizes"])
        return StepOutput(loss=loss, metrics=parts, num_tokens=images.shape[0])

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict, nms_iou: float | None = None) -> list[dict]:
        """COCO result records (``image_id``, ``category_id``, ``bbox`` xywh in the annotated image's pixels,
        ``score``) of every query of every image in ``batch`` (already on the model's device); with ``nms_iou``,
        after class-wise non-maximum suppression."""
        images = self.prepare(batch["images"], batch["padding_mask"])
        with value_checks(False):
            output = model(images, batch["padding_mask"])
        results = postprocess(output.logits, output.boxes, batch["orig_sizes"], class_scores=class_scores_of(model))
        records = []
        for image_id, result in zip(batch["image_ids"], results):
            if nms_iou is not None:
                result = result.nms(nms_iou)
            records += result.to_coco(int(image_id), self.category_ids)
        return records

    @torch.no_grad()
    def evaluate(self, model: nn.Module, eval_loader: Iterable[dict], nms_iou: float | None = None) -> dict[str, float]:
        """COCO AP (``ap``, ``ap50``, ``ap75``, ``ap_small``, ``ap_medium``, ``ap_large``, and recalls) of ``model``.

        ``eval_loader`` yields batches with ``image_ids`` and ``orig_sizes`` and has a ``coco`` attribute: the
        COCO-format ground truth (dict) of its images, in the annotated images' pixels. ``nms_iou`` applies
        class-wise non-maximum suppression to the predictions first (DETR needs none; the number shows it).
        """
        ground_truth = getattr(eval_loader, "coco", None)
        if not isinstance(ground_truth, dict):
            raise TypeError("DetectionTask.evaluate needs an eval loader with a `coco` ground-truth dict "
                            "(formers.data.detection_loader.DetectionLoader)")
        known = sorted(c["id"] for c in ground_truth.get("categories", []))
        if sorted(self.category_ids) != known:
            raise ValueError(f"the task writes category ids {self.category_ids}, the ground truth defines {known}: "
                             "give DetectionTask the dataset's category_ids")
        device = next(model.parameters()).device
        records: list[dict] = []
        for batch in eval_loader:
            records += self.predict(model, move_to_device(batch, device), nms_iou)
        return coco_evaluate(ground_truth, records)


def evaluate_coco_checkpoint(
    directory: str | Path, annotation_file: str | Path, images_dir: str | Path | None = None, batch_size: int = 8,
    device: str | torch.device = "cpu", nms_iou: float | None = None,
) -> dict[str, float]:
    """COCO AP of a detection checkpoint on any COCO-format set.

    The set's categories must be the checkpoint's (same ids, same names), as its ``preprocessing.json`` records them;
    images are resized and normalised as at the checkpoint's evaluation, and every image is padded alike (so the AP
    does not depend on ``batch_size``).

    Args:
        directory: a checkpoint or run directory with ``preprocessing.json``.
        annotation_file: the COCO JSON file.
        images_dir: folder of its images (default: the JSON file's folder).
        batch_size: images per forward pass.
        device: where to run the model.
        nms_iou: apply class-wise non-maximum suppression at this IoU first (None: none, as DETR is meant).

    Raises:
        ValueError: categories that differ from the checkpoint's, and every error of :func:`read_coco`.
    """
    directory = resolve_checkpoint_dir(directory)
    preprocessing = DetectionPreprocessing.load(directory)
    dataset = read_coco(annotation_file, images_dir)
    ours = dict(zip(preprocessing.category_ids, preprocessing.class_names))
    theirs = dict(zip(dataset.category_ids, dataset.class_names))
    if ours != theirs:
        raise ValueError(f"{annotation_file} has categories {theirs} but the checkpoint was trained on {ours} "
                         "(COCO ids and names must agree)")
    model = from_pretrained(directory, device=device)
    task = DetectionTask(len(ours), preprocessing.mean, preprocessing.std, category_ids=preprocessing.category_ids)
    loader = DetectionLoader(dataset, batch_size, preprocessing.transform(), train=False)
    return task.evaluate(model, loader, nms_iou=nms_iou)


__all__ = ["DetectionTask", "evaluate_coco_checkpoint", "HungarianMatcher", "LossWeights", "Matching", "SetCriterion"]
