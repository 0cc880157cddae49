"""End-to-end detection: a recipe trained through `formers train`, then `formers detect` and `formers evaluate` on its
checkpoint; the built-in detection recipes are valid; fashion-detect-cpu learns (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")
pytest.importorskip("pycocotools")
PIL = pytest.importorskip("PIL.Image")

import formers  # noqa: E402
from formers.cli.main import main  # noqa: E402
from formers.config import from_dict, parse_set_args  # noqa: E402
from formers.data.detection_loader import DetectionPreprocessing  # noqa: E402
from formers.recipes.detection import DetectionData, DetectionOptions, sections  # noqa: E402
from formers.recipes.recipe import list_recipes, load_recipe  # noqa: E402

CATEGORIES = [{"id": 4, "name": "red square"}, {"id": 9, "name": "green square"}]


def write_coco(folder: Path, count: int, seed: int) -> Path:
    """``count`` 64x64 canvases with one or two coloured squares each, as a COCO set in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    images, annotations = [], []
    for i in range(1, count + 1):
        canvas = np.zeros((64, 64, 3), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 3))):
            side, (x, y), k = int(rng.integers(12, 28)), rng.integers(0, 36, size=2), int(rng.integers(2))
            canvas[y : y + side, x : x + side, k] = 255
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": CATEGORIES[k]["id"],
                                "bbox": [int(x), int(y), side, side], "area": side * side, "iscrowd": 0})
        PIL.fromarray(canvas).save(folder / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 64})
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny DETR trained for 30 steps through `formers train` on a synthetic COCO set: (run dir, test JSON)."""
    tmp = tmp_path_factory.mktemp("detection")
    train, test = write_coco(tmp / "train", 24, seed=0), write_coco(tmp / "test", 8, seed=1)
    recipe = {
        "name": "squares-tiny",
        "task": "detection",
        "model": {"name": "detr_tiny", "backbone_width": 8, "backbone_depths": [1, 1, 1], "embed_dim": 32,
                  "num_encoder_layers": 1, "num_decoder_layers": 2, "num_queries": 5},
        "data": {"dataset": "coco", "train": str(train), "test": str(test), "batch_size": 8, "eval_batch_size": 3},
        "task_options": {"hflip": True, "scales": [48, 64], "max_size": 80, "eval_size": 64},
        "optim": {"name": "adamw", "lr": 1e-3, "schedule": "constant", "warmup_steps": 0,
                  "lr_scales": {"backbone.": 0.5}},
        "train": {"max_steps": 30, "eval_every": 15, "save_every": 15, "log_every": 10, "device": "cpu",
                  "progress_bar": False, "tensorboard": False, "best_metric": "ap", "best_mode": "max"},
    }
    path = tmp / "recipe.json"
    path.write_text(json.dumps(recipe))
    run_dir = tmp / "run"
    assert main(["train", str(path), "--run-dir", str(run_dir)]) == 0
    return run_dir, test


def test_recipe_trains_and_reports_coco_ap_with_and_without_nms(trained, capsys):
    run_dir, _ = trained
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 30 and results["test_ap"] == results["test_ap_final"]
    for key in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ap_nms", "ap50_nms"):
        assert -1.0 <= results[f"test_{key}_final"] <= 1.0 and f"test_{key}_best" in results, key
    prep = DetectionPreprocessing.load(run_dir / "checkpoints" / "best")
    assert prep.class_names == ["red square", "green square"] and prep.category_ids == [4, 9]
    assert prep.size == 64 and len(prep.mean) == 3
    model = formers.from_pretrained(run_dir)
    assert model.config.num_classes == 2 and model.config.num_queries == 5
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert "eval_ap" in header and "loss_giou" in header


def test_detect_prints_json_lines_and_draws(trained, tmp_path, capsys):
    run_dir, test = trained
    images = [str(test.parent / "1.png"), str(test.parent / "2.png")]
    capsys.readouterr()
    assert main(["detect", "--checkpoint", str(run_dir), *images, "--threshold", "0.0", "--device", "cpu",
                 "--draw", str(tmp_path / "boxes.png")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == images and all(len(line["detections"]) == 5 for line in lines)
    first = lines[0]["detections"]
    assert [d["score"] for d in first] == sorted((d["score"] for d in first), reverse=True)
    assert {d["name"] for d in first} <= {"red square", "green square"}
    assert all(0 <= v <= 64 for d in first for v in d["box"])
    assert (tmp_path / "boxes-1.png").is_file() and (tmp_path / "boxes-2.png").is_file()
    assert main(["detect", "--checkpoint", str(run_dir), images[0], "--threshold", "0.99", "--device", "cpu"]) == 0
    assert all(d["score"] > 0.99 for d in json.loads(capsys.readouterr().out)["detections"])


def test_evaluate_gives_the_runs_final_ap_on_its_test_set(trained, capsys, tmp_path):
    run_dir, test = trained
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run_dir), "--coco", str(test), "--images", str(test.parent),
                 "--batch-size", "5", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out.splitlines()[-1])
    results = json.loads((run_dir / "results.json").read_text())
    assert round(metrics["ap"], 4) == results["test_ap_final"]  # another batch size, the same AP
    other = json.loads(test.read_text())
    other["categories"][1]["name"] = "blue square"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["evaluate", "--checkpoint", str(run_dir), "--coco", str(tmp_path / "other.json"), "--images",
                 str(test.parent)]) == 2
    assert "trained on" in capsys.readouterr().err
    assert main(["detect", "--checkpoint", str(run_dir), str(test)]) == 2  # a JSON file is not an image
    assert "not an image format" in capsys.readouterr().err


def test_builtin_detection_recipes_are_valid():
    recipes = {name: r for name, r in list_recipes().items() if r.task == "detection"}
    assert {"fashion-detect-cpu", "fashion-detect", "deepforest-trees"} <= set(recipes)
    for name in recipes:
        recipe = load_recipe(name)
        from_dict(DetectionData, recipe.data, prefix="data.")
        from_dict(DetectionOptions, recipe.task_options, prefix="task_options.")
        assert recipe.expected.metric and recipe.expected.hardware, name
        overrides = {k: v for k, v in recipe.model.items() if k != "name"}
        with torch.device("meta"):
            model = formers.create_model(recipe.model["name"], **{"num_classes": 10, **overrides})
        assert model.family == "detr", name


@pytest.mark.slow
def test_fashion_detect_cpu_learns(tmp_path, monkeypatch):
    """The CPU recipe as shipped (its canvases generated into tmp_path): the final weights' AP50 beats an untrained
    model's by a wide margin (measured in the recipe's `expected`)."""
    from formers.data.images import fashion_mnist_dir

    try:
        fashion_mnist_dir(download_missing=False)
    except FileNotFoundError:
        pytest.skip("needs Fashion-MNIST: `apt-get install dataset-fashion-mnist` or set $FORMERS_DATA_DIR")
    run_dir = tmp_path / "run"
    assert main(["train", "fashion-detect-cpu", "--run-dir", str(run_dir), "--set", f"data.root={tmp_path / 'data'}",
                 "--set", "train.max_minutes=30"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    # Measured: AP 0.2802, AP50 0.4389 in 2.8 minutes on 2 CPU threads (seed 0); an untrained DETR scores about 0.001.
    assert results["test_ap50_final"] > 0.3 and results["test_ap_final"] > 0.15, results


def test_bad_data_and_options_raise_one_clear_line():
    recipe = load_recipe("fashion-detect-cpu", parse_set_args(["data.pad_multiple=0"]))
    with pytest.raises(ValueError, match=r"data.pad_multiple must be >= 1 \(or null: 64 on CUDA, else 1\), got 0"):
        sections(recipe)
    with pytest.raises(ValueError, match=r"task_options.crop must be \[min, max\], got \[1\]"):
        sections(load_recipe("fashion-detect-cpu", parse_set_args(["task_options.crop=[1]"])))


def test_a_missing_data_folder_falls_back_to_formers_data_dir_or_says_how_to_get_it(tmp_path, monkeypatch):
    from formers.recipes.detection import resolve_data_path

    (tmp_path / "deepforest").mkdir()
    monkeypatch.setenv("FORMERS_DATA_DIR", str(tmp_path))
    assert resolve_data_path("../no-such-checkout/shared/data/deepforest", "data.train") == str(tmp_path / "deepforest")
    assert resolve_data_path(str(tmp_path), "data.train") == str(tmp_path)  # an existing path is kept
    with pytest.raises(FileNotFoundError) as info:
        resolve_data_path("../nowhere/trees.csv", "data.test")
    assert str(info.value) == (f"data.test: '../nowhere/trees.csv' does not exist nor "
                               f"{str(tmp_path / 'trees.csv')!r}")
    monkeypatch.delenv("FORMERS_DATA_DIR")
    with pytest.raises(FileNotFoundError, match=r"^data.train: '../x/deepforest' does not exist \(nor "
                       r"\$FORMERS_DATA_DIR, which is not set\); the DeepForest sample images .* "
                       r"`pip download --no-deps deepforest==2.1.0`"):
        resolve_data_path("../x/deepforest", "data.train")
