"""Tests for the image-classification task: losses, metrics, a real-data learning run and recipes end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from formers.data.image_transforms import MixUpCutMix, Preprocessing
from formers.data.images import ImageBatchLoader, image_eval_batches, load_digits
from formers.models.outputs import ImageClassificationOutput
from formers.recipes.image_classification import (
    ImageData,
    holdout,
    load_splits,
)
from formers.tasks.image_classification import ImageClassificationTask
from formers.tasks.losses import soft_target_cross_entropy


class LinearClassifier(nn.Module):
    """A stand-in model: flattens the normalised pixels into one linear layer."""

    def __init__(self, pixels: int, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(pixels, num_classes)

    def forward(self, images: torch.Tensor) -> ImageClassificationOutput:
        return ImageClassificationOutput(self.head(images.flatten(1)))


def digits_prep() -> Preprocessing:
    return Preprocessing([str(i) for i in range(10)], (8, 8), 1, [0.3], [0.4])


def test_training_step_is_smoothed_cross_entropy_of_the_normalised_batch() -> None:
    prep = digits_prep()
    model = LinearClassifier(64, 10)
    images, labels = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (6,))
    out = ImageClassificationTask(prep, label_smoothing=0.1).training_step(model, {"images": images, "labels": labels})
    logits = model(prep(images)).logits
    assert out.loss.item() == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item(), rel=1e-6)
    assert out.metrics["acc"].item() == pytest.approx((logits.argmax(-1) == labels).float().mean().item())
    assert out.num_tokens == 6


def test_training_step_with_mixup_uses_soft_targets() -> None:
    prep = digits_prep()
    model = LinearClassifier(64, 10)
    images, labels = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (6,))
    mix = MixUpCutMix(10, mixup_alpha=0.4, cutmix_alpha=1.0)
    task = ImageClassificationTask(prep, label_smoothing=0.1, crop_padding=1, hflip=True, mix=mix)
    torch.manual_seed(3)
    loss = task.training_step(model, {"images": images, "labels": labels}).loss
    torch.manual_seed(3)
    from formers.data.image_transforms import random_crop_flip

    x, targets = mix(prep(random_crop_flip(images, 1, True)), labels)
    assert loss.item() == pytest.approx(soft_target_cross_entropy(model(x).logits, targets, 0.1).item(), rel=1e-6)
    # MixUp/CutMix toss their coins on the host: a CUDA graph would freeze them (train.cuda_graphs stays off)
    assert not task.capturable and ImageClassificationTask(prep, crop_padding=1, hflip=True).capturable
    with pytest.raises(ValueError, match="label_smoothing"):
        ImageClassificationTask(prep, label_smoothing=1.0)


def test_evaluate_counts_accuracy_and_top5_over_every_image() -> None:
    prep = digits_prep()
    model = LinearClassifier(64, 10)
    images, labels = torch.randint(0, 256, (23, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (23,))
    from formers.data.images import ImageSplit

    batches = image_eval_batches(ImageSplit(images, labels, prep.class_names), 5)
    metrics = ImageClassificationTask(prep).evaluate(model, batches)
    logits = model(prep(images)).logits
    top5 = (logits.topk(5, -1).indices == labels[:, None]).any(-1).float().mean()
    assert metrics["acc"] == pytest.approx((logits.argmax(-1) == labels).float().mean().item())
    assert metrics["top5"] == pytest.approx(top5.item())
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)


def test_a_short_digits_run_learns(train_plainly) -> None:
    train, test = load_digits("train"), load_digits("test")
    prep = Preprocessing(train.class_names, (8, 8), 1, [0.3], [0.4])
    task = ImageClassificationTask(prep, label_smoothing=0.1)  # shifted crops would only confuse a linear model
    model = LinearClassifier(64, 10)
    before = task.evaluate(model, image_eval_batches(test, 200))["acc"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_plainly(model, task, ImageBatchLoader(train, 64, seed=0), opt, epochs=8)
    after = task.evaluate(model, image_eval_batches(test, 200))
    assert before < 0.3 and after["acc"] > 0.9 and after["top5"] > 0.99, (before, after)


def test_splits_hold_out_validation_and_resize(tmp_path: Path) -> None:
    train, test = load_splits(ImageData(dataset="digits", image_size=16))
    assert train.images.shape[1:] == (1, 16, 16) and test.images.shape[1:] == (1, 16, 16)
    rest, val = holdout(train, 100, seed=0)
    assert len(rest) == len(train) - 100 and len(val) == 100
    assert holdout(train, 0, seed=0) == (train, None)
    with pytest.raises(ValueError, match="val_size must be <"):
        holdout(train, len(train), seed=0)
    with pytest.raises(ValueError, match="data.dataset must be"):
        load_splits(ImageData(dataset="cifar"))
    with pytest.raises(ValueError, match="needs data.image_size"):
        load_splits(ImageData(dataset="image_folder", train_dir=str(tmp_path), test_dir=str(tmp_path)))


def test_image_folder_splits_share_the_training_classes(tmp_path: Path) -> None:
    from PIL import Image

    for split, count in (("train", 3), ("test", 2)):
        for name, value in (("cat", 40), ("dog", 200)):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (10 + i, 7), (value, value, 0)).save(tmp_path / split / name / f"{i}.png")
    data = ImageData(dataset="image_folder", train_dir=str(tmp_path / "train"), test_dir=str(tmp_path / "test"),
                     image_size=6)
    train, test = load_splits(data)
    assert train.images.shape == (6, 3, 6, 6) and test.images.shape == (4, 3, 6, 6)
    assert train.class_names == test.class_names == ["cat", "dog"] and test.labels.tolist() == [0, 0, 1, 1]
    assert int(test.images[3, 0, 3, 3]) == 200
    (tmp_path / "test" / "bird").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "test" / "bird" / "0.png")
    with pytest.raises(ValueError, match=r"has classes \['bird', 'cat', 'dog'\], expected \['cat', 'dog'\]"):
        load_splits(data)


