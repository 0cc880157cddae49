"""Object detection as set prediction (DETR, Carion et al. 2020): Hungarian matching, the set criterion, COCO AP.

Each image's ground-truth boxes are matched one-to-one to the model's queries by the assignment of least cost
(class 1, L1 5, generalized IoU 2, paper sec. 3.1); unmatched queries are trained towards "no object". The loss is
cross-entropy over ``num_classes + 1`` labels (the no-object class weighted 0.1) plus L1 (weight 5) and GIoU (weight 2)
on the matched boxes, normalised by the number of ground-truth boxes, summed over the final and every auxiliary
decoder layer (each with its own matching), as facebookresearch/detr and Hugging Face's ``ForObjectDetectionLoss``
compute it (tests/tasks/test_detection.py checks both against the latter).

Speed: the cost matrices of every decoder layer and every image are computed at once on the device, in float32
even under autocast. Where an image's boxes are few against the queries (at most 10,000 ordered choices of distinct
queries for its box slots, as in ``fashion-detect``: 6 queries, up to 2 boxes), the least-cost assignment is found
on the device by scoring every choice, so nothing in a training step reads the device and the Trainer can replay the
step from a CUDA graph (``train.cuda_graphs``); otherwise the costs cross to the host in one transfer,
``scipy.optimize.linear_sum_assignment`` solves each (queries x boxes) block, and the matched indices go back in one
transfer. The losses of all layers are computed together.

Batches (from :func:`formers.data.detection_loader.collate_detection`) are dicts: ``images`` (B, C, H, W) uint8
padded at the bottom/right, ``padding_mask`` (B, H, W) bool (True = real pixel), ``labels`` (B, M) int64 and
``boxes`` (B, M, 4) float32 normalised (cx, cy, w, h), each image's boxes first and then padding (label -1, the
whole-image box) up to M, the most boxes of an image in the batch (:func:`~formers.data.detection_loader.pad_targets`),
``sizes`` (list of B ints: boxes per image), and for evaluation ``image_ids`` (B ints) and ``orig_sizes`` (B (height,
width) pairs of the annotated images).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.data.detection import read_coco
from formers.data.detection_loader import (
    DetectionLoader,
    DetectionPreprocessing,
    normalize_padded,
    pad_targets,
)
from formers.devices import move_to_device
from formers.hub import from_pretrained, resolve_checkpoint_dir
from formers.inference.detection import class_scores_of, postprocess
from formers.layers import value_checks
from formers.layers.boxes import (
    box_cxcywh_to_xyxy,
    elementwise_generalized_box_iou,
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
        device_assignments: where an image's M box slots have at most this many ordered choices of M distinct
            queries out of Q (Q! / (Q - M)!: 30 for 6 queries and 2 boxes, 9,900 for 100 and 2), the least-cost one
            is found on the device by trying them all, nothing read on the host, so the step can be a CUDA graph;
            otherwise ``scipy.optimize.linear_sum_assignment`` solves each image on the host. 0: always the host.
    """

    def __init__(self, class_cost: float = 1.0, box_cost: float = 5.0, giou_cost: float = 2.0, focal: bool = False,
                 alpha: float = 0.25, gamma: float = 2.0, device_assignments: int = 10_000) -> None:
        if min(class_cost, box_cost, giou_cost) < 0 or class_cost == box_cost == giou_cost == 0:
            raise ValueError(
                f"matching costs must be >= 0 and not all 0, got class {class_cost}, box {box_cost}, giou {giou_cost}"
            )
        if device_assignments < 0:
            raise ValueError(f"device_assignments must be >= 0, got {device_assignments}")
        self.class_cost, self.box_cost, self.giou_cost = class_cost, box_cost, giou_cost
        self.focal, self.alpha, self.gamma = focal, alpha, gamma
        self.device_assignments = device_assignments
        self._tables: dict[tuple[int, int, str], Tensor] = {}

    @torch.no_grad()
    def cost_matrix(self, logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor) -> Tensor:
        """Costs (L, B, Q, M) of every query against every box of its image, float32 on the device.

        Args:
            logits: (L, B, Q, K + 1) class scores of L stacked decoder layers.
            boxes: (L, B, Q, 4) predicted normalised (cx, cy, w, h).
            labels: (B, M) ground-truth classes, padded (:func:`~formers.data.detection_loader.pad_targets`).
            target_boxes: (B, M, 4) ground-truth normalised (cx, cy, w, h), padded with finite boxes.
        """
        num_layers, batch, num_queries = logits.shape[:3]
        width = labels.shape[1]
        with torch.autocast(logits.device.type, enabled=False):
            pred = boxes.float()[:, :, :, None]  # (L, B, Q, 1, 4)
            target = target_boxes.float()[None, :, None]  # (1, B, 1, M, 4)
            index = labels.clamp(min=0)[None, :, None, :].expand(num_layers, batch, num_queries, width)  # (L, B, Q, M)
            if self.focal:
                prob = logits.float().gather(-1, index).sigmoid()  # (L, B, Q, M)
                positive = self.alpha * (1 - prob) ** self.gamma * -(prob + 1e-8).log()
                negative = (1 - self.alpha) * prob**self.gamma * -(1 - prob + 1e-8).log()
                cost_class = positive - negative
            else:
                cost_class = -logits.float().softmax(-1).gather(-1, index)  # (L, B, Q, M)
            cost_box = (pred - target).abs().sum(-1)  # (L, B, Q, M)
            giou = elementwise_generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(target))
            cost = self.class_cost * cost_class + self.box_cost * cost_box - self.giou_cost * giou
            # Degenerate predictions (NaN, inf) are matched only when nothing else is left.
            big = torch.finfo(cost.dtype).max
            return torch.nan_to_num(cost, nan=big, posinf=big, neginf=big)

    @torch.no_grad()
    def assign(self, logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor,
               sizes: Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        """The query matched to each ground-truth slot of each decoder layer and image.

        Args:
            logits: (L, B, Q, K + 1).
            boxes: (L, B, Q, 4).
            labels: (B, M) padded with :data:`~formers.data.detection_loader.PAD_LABEL`.
            target_boxes: (B, M, 4) padded.
            sizes: boxes per image when known on the host (saves a device read on the host path).

        Returns:
            ``(query, matched)``: (L, B, M) int64 query indices and (L, B, M) bool, True where slot m of image b
            holds a box that layer l matched (a box is left unmatched only when its image has more boxes than
            queries); the queries of one image's matched slots differ.
        """
        num_layers, batch, num_queries = logits.shape[:3]
        width = labels.shape[1]
        valid = labels >= 0  # (B, M)
        cost = self.cost_matrix(logits, boxes, labels, target_boxes)  # (L, B, Q, M)
        if width <= num_queries and math.perm(num_queries, width) <= self.device_assignments:
            table = self._assignments(num_queries, width, logits.device)  # (P, M)
            per_slot = cost.double()[:, :, table, torch.arange(width, device=logits.device)]  # (L, B, P, M)
            total = torch.where(valid[None, :, None], per_slot, 0.0).sum(-1)  # (L, B, P)
            query = table[total.argmin(-1)]  # (L, B, P) -> (L, B, M)
            return query, valid[None].expand(num_layers, batch, width)
        # The host's Hungarian algorithm: one transfer there and one back.
        counts = list(sizes) if sizes is not None else valid.sum(1).tolist()
        host = cost.cpu().numpy()
        query = np.zeros((num_layers, batch, width), dtype=np.int64)
        matched = np.zeros((num_layers, batch, width), dtype=bool)
        for layer in range(num_layers):
            for b, n in enumerate(counts):
                if n:
                    queries, slots = _linear_sum_assignment(host[layer, b, :, :n])
                    query[layer, b, slots], matched[layer, b, slots] = queries, True
        out = torch.from_numpy(np.stack([query, matched.astype(np.int64)]))  # (2, L, B, M)
        out = out.to(logits.device, non_blocking=True)
        return out[0], out[1].bool()

    def _assignments(self, num_queries: int, width: int, device: torch.device) -> Tensor:
        """(P, M) every ordered choice of M distinct queries out of Q, cached per device."""
        key = (num_queries, width, str(device))
        if key not in self._tables:
            table = list(itertools.permutations(range(num_queries), width))
            # non_blocking: a copy from pageable memory, done when it returns, that never waits on the device
            self._tables[key] = torch.tensor(table, dtype=torch.long).view(len(table), width).to(device,
                                                                                                  non_blocking=True)
        return self._tables[key]

    @torch.no_grad()
    def __call__(self, logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor, sizes: list[int]) -> Matching:
        """Matches every stacked decoder layer of every image, as flat pairs (reads the device).

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
        if len(sizes) != logits.shape[1] or sum(sizes) != labels.shape[0]:
            raise ValueError(f"sizes {sizes} must give the box count of each of the {logits.shape[1]} images, summing "
                             f"to the {labels.shape[0]} labels")
        padded_labels, padded_boxes = pad_targets(labels, target_boxes, sizes)
        query, matched = self.assign(logits, boxes, padded_labels, padded_boxes, sizes)
        layer, image, slot = matched.nonzero(as_tuple=True)
        starts = torch.tensor([0, *itertools.accumulate(sizes)][:-1], dtype=torch.long, device=logits.device)
        return Matching(layer, image, query[layer, image, slot], starts[image] + slot)


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

    def __call__(self, output: DetectionOutput, labels: Tensor, boxes: Tensor,
                 sizes: Sequence[int] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The total loss (float32 scalar) and its parts for logging.

        Args:
            output: the model's predictions (``logits`` (B, Q, K + 1), ``boxes`` (B, Q, 4), ``aux_outputs``).
            labels: (B, M) ground-truth classes padded with :data:`~formers.data.detection_loader.PAD_LABEL` (the
                batches' layout), or (T,) the batch's boxes image after image, with ``sizes``.
            boxes: (B, M, 4) normalised (cx, cy, w, h) (padded with finite boxes), or (T, 4).
            sizes: boxes per image (B host ints); needed with (T,) labels, optional with padded ones (it spares the
                host path of the matching a device read).

        Returns:
            ``(loss, parts)``; ``parts`` holds the final layer's ``loss_ce``, ``loss_bbox``, ``loss_giou`` and
            ``cardinality_error`` (absolute error of the number of predicted objects) and the auxiliary layers' sum
            ``loss_aux``. Where the matching runs on the device (see :class:`HungarianMatcher`), nothing here reads
            the device.
        """
        if labels.dim() == 1:
            if sizes is None:
                raise ValueError("labels (T,) of the whole batch need sizes (boxes per image)")
            labels, boxes = pad_targets(labels, boxes, sizes)
        layers = [*output.aux_outputs, output] if self.aux_loss else [output]
        logits = torch.stack([o.logits for o in layers]).float()  # (L, B, Q, K + 1), the last layer last
        pred_boxes = torch.stack([o.boxes for o in layers]).float()  # (L, B, Q, 4)
        if logits.shape[-1] != self.num_classes + 1:
            raise ValueError(f"logits score {logits.shape[-1]} labels, the criterion expects num_classes + 1 = "
                             f"{self.num_classes + 1}")
        if labels.shape[0] != logits.shape[1] or boxes.shape != (*labels.shape, 4):
            raise ValueError(f"targets for {labels.shape[0]} images (labels {tuple(labels.shape)}, boxes "
                             f"{tuple(boxes.shape)}) do not fit predictions for {logits.shape[1]} images")
        if output.query_groups > 1:  # Group DETR: each group is one more image with the same boxes
            logits, pred_boxes, labels, boxes, sizes = _split_groups(output.query_groups, logits, pred_boxes, labels,
                                                                     boxes, sizes)
        num_layers, batch, num_queries, num_labels = logits.shape
        query, matched = self.matcher.assign(logits, pred_boxes, labels, boxes, sizes)  # (L, B, M) each
        valid = labels >= 0  # (B, M)
        num_boxes = _num_boxes(valid)
        w = self.weights
        # Unmatched slots write to a spare query Q, dropped after: one image's matched queries differ, so no two
        # writes of a scatter meet.
        spare_query = torch.where(matched, query, num_queries)  # (L, B, M)
        slot_labels = labels.clamp(min=0)[None].expand_as(query)  # (L, B, M)

        if self.class_scores == "sigmoid":
            # torchvision: the detection extra, not the core install
            from torchvision.ops import sigmoid_focal_loss

            onehot = logits.new_zeros(num_layers, batch, (num_queries + 1) * (num_labels - 1))  # (L, B, (Q+1) * K)
            onehot.scatter_(2, spare_query * (num_labels - 1) + slot_labels, matched.float())
            onehot = onehot.view(num_layers, batch, num_queries + 1, num_labels - 1)[:, :, :num_queries]  # (L, B, Q, K)
            focal = sigmoid_focal_loss(logits[..., :-1], onehot, w.focal_alpha, w.focal_gamma)  # (L, B, Q, K)
            loss_ce = focal.flatten(1).sum(-1) / num_boxes  # (L,)
        else:
            classes = torch.full((num_layers, batch, num_queries + 1), self.num_classes, dtype=torch.long,
                                 device=logits.device)
            classes.scatter_(2, spare_query, torch.where(matched, slot_labels, self.num_classes))
            classes = classes[:, :, :num_queries]  # (L, B, Q)
            # 1 for the classes, no_object for the last label (built on the device: an indexed write of a Python
            # number would copy it from the host and wait)
            class_weight = torch.where(torch.arange(num_labels, device=logits.device) < num_labels - 1, 1.0,
                                       w.no_object)  # (K + 1,) float32
            nll = F.cross_entropy(logits.flatten(0, 2), classes.flatten(), weight=class_weight,
                                  reduction="none")  # (L*B*Q,)
            # Per layer, the weighted mean of PyTorch's cross_entropy(weight=...): sum(w * nll) / sum(w).
            loss_ce = nll.view(num_layers, -1).sum(-1) / class_weight[classes].view(num_layers, -1).sum(-1)  # (L,)

        picked = pred_boxes.gather(2, query[..., None].expand(-1, -1, -1, 4))  # (L, B, M, 4)
        target = boxes.float()[None].expand_as(picked)  # (L, B, M, 4), finite on the padding
        l1 = torch.where(matched, (picked - target).abs().sum(-1), 0.0)  # (L, B, M)
        giou = elementwise_generalized_box_iou(box_cxcywh_to_xyxy(picked), box_cxcywh_to_xyxy(target))
        loss_bbox = l1.flatten(1).sum(-1) / num_boxes  # (L,)
        loss_giou = torch.where(matched, 1 - giou, 0.0).flatten(1).sum(-1) / num_boxes  # (L,)

        total = w.ce * loss_ce + w.l1 * loss_bbox + w.giou * loss_giou  # (L,)
        with torch.no_grad():
            if self.class_scores == "sigmoid":  # a query predicts an object when a class is more likely than not
                predicted = (logits[-1, ..., :-1].max(-1).values > 0).sum(-1).float()  # (B,)
            else:
                predicted = (logits[-1].argmax(-1) != self.num_classes).sum(-1).float()  # (B,)
            cardinality = (predicted - valid.sum(-1).float()).abs().mean()
        parts = {"loss_ce": loss_ce[-1].detach(), "loss_bbox": loss_bbox[-1].detach(),
                 "loss_giou": loss_giou[-1].detach(), "loss_aux": total[:-1].sum().detach(),
                 "cardinality_error": cardinality}
        return total.sum(), parts


def _split_groups(groups: int, logits: Tensor, pred_boxes: Tensor, labels: Tensor, boxes: Tensor,
                  sizes: Sequence[int] | None) -> tuple[Tensor, Tensor, Tensor, Tensor, list[int] | None]:
    """Group DETR's predictions (L, B, G * Q, ...) as (L, B * G, Q, ...) and each image's boxes repeated for each of
    its G groups: matched and scored as separate images, the losses (divided by the G-fold box count) are the mean of
    the groups' losses."""
    num_layers, batch, total = logits.shape[:3]
    if total % groups:
        raise ValueError(f"{total} queries do not split into {groups} query groups")
    logits = logits.reshape(num_layers, batch * groups, total // groups, -1)
    pred_boxes = pred_boxes.reshape(num_layers, batch * groups, total // groups, 4)
    sizes = None if sizes is None else [n for n in sizes for _ in range(groups)]
    return logits, pred_boxes, labels.repeat_interleave(groups, 0), boxes.repeat_interleave(groups, 0), sizes


def _num_boxes(valid: Tensor) -> Tensor:
    """Ground-truth boxes per process, averaged over data-parallel processes (at least 1), as a device scalar."""
    total = valid.sum().float()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
        total = total / torch.distributed.get_world_size()
    return total.clamp(min=1.0)


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
    # training_step: device work only where the matching runs on the device (few boxes against the queries); a step
    # whose matching needs the host is found in the CUDA-graph warm-up and trains eagerly, with one warning
    capturable = True

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
        # Padded targets; the host's sizes are left out, so that a replayed CUDA graph never sees a stale copy.
        loss, parts = self.criterion(output, batch["labels"], batch["boxes"])
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
