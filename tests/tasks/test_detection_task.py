"""DETR's Hungarian matcher and set criterion (against brute force and Hugging Face's loss) and the detection task."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

pytest.importorskip("scipy")
ops = pytest.importorskip("torchvision.ops")

from formers.data.detection_loader import pad_targets  # noqa: E402
from formers.models.detr import DETR, DETRConfig  # noqa: E402
from formers.models.outputs import DetectionOutput  # noqa: E402
from formers.tasks.detection import DetectionTask, HungarianMatcher, SetCriterion  # noqa: E402


def _predictions(layers: int, batch: int, queries: int, classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(layers, batch, queries, classes + 1, generator=g) * 2
    boxes = torch.rand(layers, batch, queries, 4, generator=g) * 0.6 + 0.1  # (cx, cy, w, h) in (0.1, 0.7)
    return logits, boxes


def _targets(sizes: list[int], classes: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    total = sum(sizes)
    labels = torch.randint(0, classes, (total,), generator=g)
    centre = torch.rand(total, 2, generator=g) * 0.6 + 0.2
    size = torch.rand(total, 2, generator=g) * 0.3 + 0.05
    return labels, torch.cat([centre, size], dim=1)  # (T,), (T, 4)


def _cost(logits, boxes, labels, target_boxes, focal=False):
    """The matching cost, written out with torchvision's ops: (Q, K + 1), (Q, 4), (n,), (n, 4) -> (Q, n).
    ``focal``: the class term is the focal loss of the class against that of the other label (Deformable DETR)."""
    if focal:
        ones = torch.ones_like(logits[:, labels])
        term = ops.sigmoid_focal_loss(logits[:, labels], ones, reduction="none") - ops.sigmoid_focal_loss(
            logits[:, labels], ones * 0, reduction="none")
    else:
        term = -logits.softmax(-1)[:, labels]
    l1 = (boxes[:, None] - target_boxes[None]).abs().sum(-1)
    to_xyxy = lambda b: ops.box_convert(b, "cxcywh", "xyxy")  # noqa: E731
    giou = ops.generalized_box_iou(to_xyxy(boxes), to_xyxy(target_boxes))
    return term + 5 * l1 - 2 * giou


@pytest.mark.parametrize("on_device", [True, False], ids=["device", "scipy"])
@pytest.mark.parametrize("focal", [False, True])
@pytest.mark.parametrize("sizes", [[2, 0, 4], [1, 3, 4], [4, 4, 1]])
def test_matcher_equals_brute_force_over_all_assignments(sizes, focal, on_device):
    logits, boxes = _predictions(2, 3, 4, classes=3)
    labels, target_boxes = _targets(sizes, classes=3)
    matcher = HungarianMatcher(focal=focal, device_assignments=10_000 if on_device else 0)
    match = matcher(logits, boxes, labels, target_boxes, sizes)
    offsets = [0, *itertools.accumulate(sizes)]
    for layer in range(2):
        for b, n in enumerate(sizes):
            cost = _cost(logits[layer, b], boxes[layer, b], labels[offsets[b]:offsets[b + 1]],
                         target_boxes[offsets[b]:offsets[b + 1]], focal)  # (Q, n)
            best = min(itertools.permutations(range(4), n), key=lambda qs: sum(cost[q, j] for j, q in enumerate(qs)))
            picked = (match.layer == layer) & (match.image == b)
            ours = {int(t) - offsets[b]: int(q) for q, t in zip(match.query[picked], match.target[picked])}
            assert ours == {j: q for j, q in enumerate(best)}, (layer, b)


@pytest.mark.parametrize("device_assignments", [10_000, 0], ids=["device", "scipy"])
def test_matcher_equals_hugging_faces(device_assignments):
    loss_utils = pytest.importorskip("transformers.loss.loss_for_object_detection")
    sizes = [3, 0, 5, 1]
    logits, boxes = _predictions(1, 4, 6, classes=4, seed=3)
    labels, target_boxes = _targets(sizes, classes=4, seed=4)
    targets = [{"class_labels": lab, "boxes": box} for lab, box in zip(labels.split(sizes), target_boxes.split(sizes))]
    theirs = loss_utils.HungarianMatcher(1, 5, 2)({"logits": logits[0], "pred_boxes": boxes[0]}, targets)
    match = HungarianMatcher(device_assignments=device_assignments)(logits[0], boxes[0], labels, target_boxes,
                                                                    sizes)  # one layer, unstacked
    offsets = [0, *itertools.accumulate(sizes)]
    for b, (queries, indices) in enumerate(theirs):
        picked = match.image == b
        assert sorted(zip(match.query[picked].tolist(), (match.target[picked] - offsets[b]).tolist())) == sorted(
            zip(queries.tolist(), indices.tolist()))


def test_matching_costs_are_float32_under_autocast():
    logits, boxes = _predictions(1, 2, 5, classes=3)
    labels, target_boxes = pad_targets(*_targets([2, 3], classes=3), [2, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cost = HungarianMatcher().cost_matrix(logits.bfloat16(), boxes.bfloat16(), labels, target_boxes)
    assert cost.dtype == torch.float32 and cost.shape == (1, 2, 5, 3)


def _criterion_case(seed: int, sizes=(3, 0, 5, 2), classes: int = 4, layers: int = 3):
    """Predictions of ``layers`` decoder layers for 4 images of 8 queries, their output, targets in both formats."""
    logits, boxes = _predictions(layers, len(sizes), 8, classes=classes, seed=seed)
    labels, target_boxes = _targets(list(sizes), classes=classes, seed=seed + 1)
    output = DetectionOutput(logits=logits[-1], boxes=boxes[-1],
                             aux_outputs=[DetectionOutput(logits[i], boxes[i]) for i in range(layers - 1)])
    hf_targets = [{"class_labels": lab, "boxes": box}
                  for lab, box in zip(labels.split(list(sizes)), target_boxes.split(list(sizes)))]
    return logits, boxes, labels, target_boxes, output, hf_targets


@pytest.mark.parametrize("aux", [True, False])
def test_set_criterion_equals_hugging_faces_loss(aux):
    loss_utils = pytest.importorskip("transformers.loss.loss_for_object_detection")
    from transformers import DetrConfig

    sizes, classes, layers = [3, 0, 5, 2], 4, 3
    logits, boxes, labels, target_boxes, output, targets = _criterion_case(5)
    loss, parts = SetCriterion(classes, aux_loss=aux)(output, labels, target_boxes, sizes)

    config = DetrConfig(num_labels=classes, auxiliary_loss=aux, decoder_layers=layers)
    their_loss, their_parts, _ = loss_utils.ForObjectDetectionLoss(
        logits[-1], targets, "cpu", boxes[-1], config, logits if aux else None, boxes if aux else None)
    torch.testing.assert_close(loss, their_loss, rtol=1e-6, atol=1e-6)
    for key in ("loss_ce", "loss_bbox", "loss_giou", "cardinality_error"):
        torch.testing.assert_close(parts[key], their_parts[key], rtol=1e-6, atol=1e-6)
    if aux:
        aux_total = sum(their_parts[f"{k}_{i}"] * w for i in range(layers - 1)
                        for k, w in [("loss_ce", 1), ("loss_bbox", 5), ("loss_giou", 2)])
        torch.testing.assert_close(parts["loss_aux"], aux_total, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("aux", [True, False])
def test_focal_criterion_equals_hugging_faces_deformable_detr_loss(aux):
    loss_utils = pytest.importorskip("transformers.loss.loss_deformable_detr")
    from transformers import DeformableDetrConfig

    sizes, classes, layers = [3, 0, 5, 2], 4, 3
    logits, boxes, labels, target_boxes, output, targets = _criterion_case(7)
    loss, parts = SetCriterion(classes, aux_loss=aux, class_scores="sigmoid")(output, labels, target_boxes, sizes)

    # Hugging Face's Deformable DETR scores the K classes only: our unused no-object logit is left out
    config = DeformableDetrConfig(num_labels=classes, auxiliary_loss=aux, decoder_layers=layers)
    their_loss, their_parts, _ = loss_utils.DeformableDetrForObjectDetectionLoss(
        logits[-1, ..., :-1], targets, "cpu", boxes[-1], config, logits[..., :-1] if aux else None,
        boxes if aux else None)
    torch.testing.assert_close(loss, their_loss, rtol=1e-6, atol=1e-6)
    for key in ("loss_ce", "loss_bbox", "loss_giou"):
        torch.testing.assert_close(parts[key], their_parts[key], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("class_scores", ["softmax", "sigmoid"])
def test_padded_targets_give_the_flat_batch_s_loss_and_gradients_matched_on_the_device_or_by_scipy(
        class_scores, monkeypatch):
    sizes, classes = [3, 0, 5, 2], 4
    logits, boxes, labels, target_boxes, _, _ = _criterion_case(9, sizes)

    def loss_and_grads(device_assignments: int, padded: bool):
        lg, bx = logits.clone().requires_grad_(True), boxes.clone().requires_grad_(True)
        output = DetectionOutput(lg[-1], bx[-1], [DetectionOutput(lg[i], bx[i]) for i in range(2)])
        matcher = HungarianMatcher(focal=class_scores == "sigmoid", device_assignments=device_assignments)
        criterion = SetCriterion(classes, matcher, class_scores=class_scores)
        if padded:  # the batches' layout; no sizes, so nothing tells the criterion the counts but the padding
            loss, parts = criterion(output, *pad_targets(labels, target_boxes, sizes))
        else:
            loss, parts = criterion(output, labels, target_boxes, sizes)
        loss.backward()
        return loss.detach(), parts, lg.grad, bx.grad

    scipy_flat = loss_and_grads(0, padded=False)
    scipy_padded = loss_and_grads(0, padded=True)

    def no_scipy(cost):
        raise AssertionError("the device assignment reached scipy")

    monkeypatch.setattr("formers.tasks.detection._linear_sum_assignment", no_scipy)
    device_padded = loss_and_grads(10_000, padded=True)  # 6,720 choices of 5 of the 8 queries: on the device
    for other in (scipy_padded, device_padded):
        torch.testing.assert_close(other[0], scipy_flat[0], rtol=1e-6, atol=1e-6)
        for key, value in scipy_flat[1].items():
            torch.testing.assert_close(other[1][key], value, rtol=1e-6, atol=1e-6, msg=key)
        torch.testing.assert_close(other[2], scipy_flat[2], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(other[3], scipy_flat[3], rtol=1e-6, atol=1e-7)


class _NoHostReads(TorchDispatchMode):
    """Fails on the operators that read a tensor's values on the host (``.item()``, ``bool()``, ``nonzero``, boolean
    masks): on a GPU each one waits for the device, and a CUDA graph cannot hold it."""

    reads = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
             torch.ops.aten.masked_select.default, torch.ops.aten.is_nonzero.default}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        assert func not in self.reads, f"{func} reads the device"
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("class_scores", ["softmax", "sigmoid"])
def test_a_training_step_with_few_boxes_reads_nothing_on_the_host(class_scores, monkeypatch):
    torch.manual_seed(0)
    model = DETR(DETRConfig(num_classes=2, backbone_block="basic", backbone_depths=[1, 1], backbone_width=8,
                            backbone_norm="batch", embed_dim=16, num_encoder_layers=1, num_decoder_layers=2,
                            num_heads=2, ffn_dim=32, num_queries=6, class_scores=class_scores))
    matcher = HungarianMatcher(focal=class_scores == "sigmoid")
    task = DetectionTask(2, [0.5] * 3, [0.5] * 3, SetCriterion(2, matcher, class_scores=class_scores))
    batch = _fixed_batch()
    batch["labels"] = torch.tensor([[0, 1], [1, -1]])  # the second image has one box and a padding slot
    batch["boxes"] = torch.cat([batch["boxes"], torch.tensor([[[0.5, 0.5, 1.0, 1.0]], [[0.5, 0.5, 1.0, 1.0]]])], 1)
    batch["boxes"][0, 1] = torch.tensor([0.7, 0.7, 0.2, 0.2])
    monkeypatch.setattr("formers.tasks.detection._linear_sum_assignment", lambda cost: pytest.fail("scipy"))
    # as on a GPU, where the training step turns the model's value checks of its inputs off (on a CPU they stay on)
    monkeypatch.setattr("formers.models.detr.should_check_values", lambda t: False)
    with _NoHostReads():
        out = task.training_step(model, batch)
        out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(p.grad).all() for p in model.parameters()
                                            if p.grad is not None)
    with pytest.raises(AssertionError, match="reads the device"), _NoHostReads():
        out.loss.item()  # the guard itself


def test_more_boxes_than_queries_match_each_query_once_on_the_host():
    logits, boxes = _predictions(2, 2, 3, classes=3)  # 3 queries
    labels, target_boxes = _targets([5, 1], classes=3)  # the first image has 5 boxes
    match = HungarianMatcher()(logits, boxes, labels, target_boxes, [5, 1])
    for layer in range(2):
        first = (match.layer == layer) & (match.image == 0)
        assert sorted(match.query[first].tolist()) == [0, 1, 2]  # every query once, 2 boxes left unmatched
        assert ((match.layer == layer) & (match.image == 1)).sum() == 1
    output = DetectionOutput(logits[-1], boxes[-1], [DetectionOutput(logits[0], boxes[0])])
    loss, parts = SetCriterion(3)(output, labels, target_boxes, [5, 1])
    assert torch.isfinite(loss) and parts["cardinality_error"] >= 0


def test_focal_criterion_refuses_a_softmax_matcher_and_its_model_starts_rare():
    with pytest.raises(ValueError, match=r"class_scores='sigmoid' needs a matcher with focal=True, got focal=False"):
        SetCriterion(3, HungarianMatcher(), class_scores="sigmoid")
    model = DETR(DETRConfig(num_classes=3, backbone_block="basic", backbone_depths=[1], backbone_width=8, embed_dim=16,
                            num_heads=2, ffn_dim=16, num_encoder_layers=1, num_decoder_layers=1, num_queries=4,
                            class_scores="sigmoid"))
    assert torch.allclose(model.class_head.bias.sigmoid(), torch.full((4,), 0.01))


def test_images_without_boxes_train_towards_no_object():
    logits, boxes = _predictions(2, 2, 5, classes=3)
    logits.requires_grad_(True)
    output = DetectionOutput(logits[-1], boxes[-1], [DetectionOutput(logits[0], boxes[0])])
    empty = torch.zeros(0, dtype=torch.long), torch.zeros(0, 4)
    loss, parts = SetCriterion(3)(output, *empty, [0, 0])
    expected = sum(torch.nn.functional.cross_entropy(logits[i].detach().flatten(0, 1), torch.full((10,), 3))
                   for i in range(2))
    torch.testing.assert_close(loss, expected)
    assert parts["loss_bbox"] == 0 and parts["loss_giou"] == 0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_bad_matcher_arguments():
    with pytest.raises(ValueError, match="not all 0"):
        HungarianMatcher(0, 0, 0)
    logits, boxes = _predictions(1, 2, 5, classes=3)
    labels, target_boxes = _targets([2, 3], classes=3)
    with pytest.raises(ValueError, match="sizes"):
        HungarianMatcher()(logits, boxes, labels, target_boxes, [2, 2])
    with pytest.raises(ValueError, match="num_classes \\+ 1 = 6"):
        SetCriterion(5)(DetectionOutput(logits[0], boxes[0]), labels, target_boxes, [2, 3])


def _fixed_batch():
    """Two 64x64 images with one bright square object each (class 0 or 1), as a collated batch."""
    images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    images[0, :, 8:24, 8:40] = 255  # 32x16 box at (8, 8)
    images[1, 1, 30:60, 20:50] = 200  # 30x30 box at (20, 30), green
    boxes = torch.tensor([[24 / 64, 16 / 64, 32 / 64, 16 / 64], [35 / 64, 45 / 64, 30 / 64, 30 / 64]])
    return {"images": images, "padding_mask": torch.ones(2, 64, 64, dtype=torch.bool),
            "labels": torch.tensor([[0], [1]]), "boxes": boxes[:, None], "sizes": [1, 1]}


def test_a_tiny_detr_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = DETR(DETRConfig(num_classes=2, backbone_block="basic", backbone_depths=[1, 1, 1, 1], backbone_width=8,
                            backbone_norm="batch", embed_dim=32, num_encoder_layers=1, num_decoder_layers=2,
                            num_heads=4, ffn_dim=64, num_queries=5, dropout=0.0, activation_dropout=0.0))
    task = DetectionTask(2, mean=[0.5] * 3, std=[0.5] * 3)
    batch = _fixed_batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for _ in range(150):
        out = task.training_step(model, batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        first = first if first is not None else out.loss.item()
    assert out.loss.item() < 0.25 * first, (first, out.loss.item())
    model.eval()
    with torch.no_grad():
        output = model(task.prepare(batch["images"], batch["padding_mask"]), batch["padding_mask"])
    best = output.logits.softmax(-1)[..., :2].amax(-1).argmax(-1)  # the most confident query per image
    predicted = output.boxes[torch.arange(2), best]
    assert (ops.box_iou(ops.box_convert(predicted, "cxcywh", "xyxy"),
                        ops.box_convert(batch["boxes"][:, 0], "cxcywh", "xyxy")).diagonal() > 0.5).all()
    assert output.logits[torch.arange(2), best, :2].argmax(-1).tolist() == [0, 1]


@pytest.mark.parametrize("class_scores", ["softmax", "sigmoid"])
def test_group_detr_loss_is_the_mean_of_its_groups_losses(class_scores):
    # Group DETR: G groups of Q queries, each matched one-to-one to all the boxes; the loss is the groups' mean.
    sizes, classes, layers, groups = [3, 0, 5, 2], 4, 3, 3
    per_group = [_criterion_case(seed)[:2] for seed in (11, 12, 13)]  # (L, B, 8, K + 1), (L, B, 8, 4) each
    labels, target_boxes = _targets(sizes, classes, seed=20)
    logits = torch.cat([lg for lg, _ in per_group], dim=2)  # (L, B, G * 8, K + 1), group after group
    boxes = torch.cat([bx for _, bx in per_group], dim=2)
    grouped = DetectionOutput(logits[-1], boxes[-1], [DetectionOutput(logits[i], boxes[i], query_groups=groups)
                                                      for i in range(layers - 1)], query_groups=groups)
    criterion = SetCriterion(classes, class_scores=class_scores)
    loss, parts = criterion(grouped, labels, target_boxes, sizes)
    alone = [criterion(DetectionOutput(lg[-1], bx[-1], [DetectionOutput(lg[i], bx[i]) for i in range(layers - 1)]),
                       labels, target_boxes, sizes) for lg, bx in per_group]
    torch.testing.assert_close(loss, sum(a[0] for a in alone) / groups, rtol=1e-6, atol=1e-6)
    for key in ("loss_ce", "loss_bbox", "loss_giou", "loss_aux", "cardinality_error"):
        torch.testing.assert_close(parts[key], sum(a[1][key] for a in alone) / groups, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="24 queries do not split into 5 query groups"):
        criterion(DetectionOutput(logits[-1], boxes[-1], query_groups=5), labels, target_boxes, sizes)
