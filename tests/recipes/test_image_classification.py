"""End-to-end runs of the image classification recipes through `formers train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import formers
from formers.cli.main import main
from formers.config import from_dict
from formers.data.image_transforms import (
    Preprocessing,
)
from formers.recipes.image_classification import (
    ImageData,
    ImageOptions,
)
from formers.recipes.recipe import list_recipes, load_recipe


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
