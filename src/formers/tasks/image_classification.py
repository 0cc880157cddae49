"""Image classification: (soft-target) cross-entropy with augmentation on the device; accuracy and top-5.

Batches are ``{"images": (B, C, H, W) uint8, "labels": (B,)}`` from :mod:`formers.data.images`. The task turns
them into model inputs itself, on the model's device: random crop + flip, normalisation, then MixUp / CutMix, so a
recipe's data pipeline is a few batched kernels. Label smoothing applies to the (mixed) targets.

Recipes name a dataset (``fashion_mnist``, ``digits`` or an ``image_folder``); evaluation during training uses the
test split (or a validation split held out of the training images with ``val_size``), and the final report gives
the test accuracy of the final (and best) weights. Each checkpoint holds ``preprocessing.json`` (class names,
image size, channels, mean/std) for ``formers classify``.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.data.image_transforms import MixUpCutMix, Preprocessing, random_crop_flip
from formers.devices import move_to_device
from formers.layers.validation import value_checks
from formers.tasks.losses import soft_target_cross_entropy
from formers.training.task import StepOutput


class ImageClassificationTask:
    """Trains a classifier on uint8 image batches; evaluates loss, accuracy and top-5 accuracy.

    Args:
        preprocessing: normalisation (and resizing) of the uint8 pixels.
        label_smoothing: epsilon of label smoothing, in [0, 1).
        crop_padding: random crops of the zero-padded image (pixels per side; 0 = off).
        hflip: random horizontal flips.
        mix: MixUp / CutMix of training batches (``None`` = off).
    """

    throughput_unit = "img"  # what StepOutput.num_tokens counts, in progress lines

    def __init__(
        self,
        preprocessing: Preprocessing,
        label_smoothing: float = 0.0,
        crop_padding: int = 0,
        hflip: bool = False,
        mix: MixUpCutMix | None = None,
    ) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        self.preprocessing = preprocessing
        self.label_smoothing = label_smoothing
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.mix = mix if mix is not None and mix.enabled else None

    @property
    def capturable(self) -> bool:
        """Whether ``train.cuda_graphs`` may replay the step: its crops and flips draw on the device, but MixUp /
        CutMix toss their coins on the host."""
        return self.mix is None

    def prepare(self, images: Tensor) -> Tensor:
        """(B, C, H, W) uint8 -> normalised float model inputs at the preprocessing's image size."""
        return self.preprocessing(images)

    def training_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        """Augments, normalises and (optionally) mixes the batch, then computes the smoothed cross-entropy."""
        images, labels = batch["images"], batch["labels"]
        if self.crop_padding or self.hflip:
            images = random_crop_flip(images, self.crop_padding, self.hflip)
        images = self.prepare(images)
        metrics: dict[str, Tensor | float] = {}
        if self.mix is not None:
            images, targets = self.mix(images, labels)
            with value_checks(False):
                logits = model(images).logits  # (B, K)
            loss = soft_target_cross_entropy(logits, targets, self.label_smoothing)
        else:
            with value_checks(False):
                logits = model(images).logits  # (B, K)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
            metrics["acc"] = (logits.detach().argmax(-1) == labels).float().mean()
        return StepOutput(loss=loss, metrics=metrics, num_tokens=labels.shape[0])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, eval_batches: Iterable[dict[str, Tensor]]) -> dict[str, float]:
        """Mean cross-entropy (``loss``), accuracy (``acc``) and top-5 accuracy (``top5``) over every image."""
        device = next(model.parameters()).device
        sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss, correct, top-5 correct
        count = 0
        for batch in eval_batches:
            batch = move_to_device(batch, device)
            labels = batch["labels"]
            with value_checks(False):
                logits = model(self.prepare(batch["images"])).logits.float()  # (B, K)
            k = min(5, logits.shape[-1])
            top = logits.topk(k, dim=-1).indices  # (B, k)
            hits = top == labels[:, None]  # (B, k)
            sums += torch.stack([
                F.cross_entropy(logits, labels, reduction="sum"), hits[:, 0].sum(), hits.any(-1).sum(),
            ]).double()
            count += labels.shape[0]
        loss, correct, top5 = (float(v) / max(count, 1) for v in sums.tolist())  # the one read-back
        return {"loss": loss, "acc": correct, "top5": top5}
