"""Tests for the image-classification task: losses, metrics, a real-data learning run and recipes end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import formers
from formers.cli.main import main
from formers.config import from_dict
from formers.data.image_transforms import MixUpCutMix, Preprocessing, soft_target_cross_entropy
from formers.data.images import ImageBatchLoader, image_eval_batches, load_digits
from formers.models.outputs import ImageClassificationOutput
from formers.recipes import list_recipes, load_recipe
from formers.tasks.image_classification import (
    ImageClassificationTask,
    ImageData,
    ImageOptions,
    holdout,
    load_splits,
)


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


def tiny_recipe(tmp_path: Path, **data) -> Path:
    recipe = {
        "name": "digits-tiny",
        "task": "image_classification",
        "model": {"name": "vit_mini_28", "patch_size": 4, "embed_dim": 32, "num_layers": 1, "num_heads": 2,
                  "drop_path_rate": 0.0},
        "data": {"dataset": "digits", "batch_size": 32, "eval_batch_size": 200, **data},
        "task_options": {"label_smoothing": 0.1, "crop_padding": 1, "mixup_alpha": 0.2, "mix_prob": 0.5},
        "optim": {"name": "adamw", "lr": 3e-3, "schedule": "constant", "warmup_steps": 0},
        "train": {"max_steps": 60, "eval_every": 30, "save_every": 30, "log_every": 10, "device": "cpu",
                  "progress_bar": False, "tensorboard": False, "best_metric": "acc", "best_mode": "max"},
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


def test_recipe_trains_reports_test_accuracy_and_checkpoints_preprocessing(tmp_path: Path, capsys) -> None:
    if "vit_mini_28" not in formers.list_models():
        pytest.skip("the ViT family is not registered yet")
    run_dir = tmp_path / "run"
    assert main(["train", str(tiny_recipe(tmp_path, val_size=200)), "--run-dir", str(run_dir)]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 60 and results["test_acc"] == results["test_acc_final"]
    assert results["test_acc_final"] > 0.2 and results["test_top5_best"] > 0.7  # chance: 0.1 and 0.5
    assert "test_loss_final" in results and results["hardware"].startswith("CPU")
    best = run_dir / "checkpoints" / "best"
    prep = Preprocessing.load(best)
    assert prep.class_names == [str(i) for i in range(10)] and prep.image_size == (8, 8) and prep.in_channels == 1
    assert "1,237 train / 200 val / 360 test" in capsys.readouterr().out
    model = formers.from_pretrained(best)
    assert model.config.in_channels == 1 and model.config.num_classes == 10 and model.config.image_size == 8


def test_builtin_image_recipes_are_valid() -> None:
    recipes = {name: r for name, r in list_recipes().items() if r.task == "image_classification"}
    expected = {"digits-cpu", "vit-fashion-mnist", "swin-fashion-mnist", "tnt-fashion-mnist",
                "efficientformer-fashion-mnist"}
    assert expected <= set(recipes)
    models = set(formers.list_models())
    for name in expected:
        recipe = load_recipe(name)
        data = from_dict(ImageData, recipe.data, prefix="data.")
        from_dict(ImageOptions, recipe.task_options, prefix="task_options.")
        assert recipe.expected.value and recipe.expected.hardware and recipe.expected.time, name
        if recipe.model["name"] not in models:
            continue  # that family has not landed yet
        size = 8 if data.dataset == "digits" else 28
        overrides = {k: v for k, v in recipe.model.items() if k != "name"}
        model = formers.create_model(recipe.model["name"], **{"in_channels": 1, "num_classes": 10,
                                                              "image_size": size, **overrides})
        assert model(torch.zeros(2, 1, size, size)).logits.shape == (2, 10), name
