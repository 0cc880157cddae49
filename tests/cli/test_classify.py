"""Tests for ``formers classify``: top-k output from a checkpoint, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import formers
from formers.cli.main import main
from formers.data.image_transforms import Preprocessing
from formers.inference.classification import classify_images

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker"]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A tiny random 8-class grayscale ViT at 8x8, saved with its preprocessing."""
    if "vit_mini_28" not in formers.list_models():
        pytest.skip("the ViT family is not registered yet")
    model = formers.create_model("vit_mini_28", image_size=8, patch_size=4, in_channels=1, num_classes=len(CLASSES),
                                 embed_dim=16, num_layers=1, num_heads=2)
    directory = tmp_path / "ckpt"
    formers.save_pretrained(model, directory)
    Preprocessing(CLASSES, (8, 8), 1, [0.3], [0.3]).save(directory)
    return directory


def write_images(tmp_path: Path) -> list[Path]:
    paths = []
    for i, (size, mode) in enumerate([((8, 8), "L"), ((20, 12), "RGB")]):
        path = tmp_path / f"img{i}.png"
        array = torch.randint(0, 256, (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]), dtype=torch.uint8)
        Image.fromarray(array.numpy(), mode=mode).save(path)
        paths.append(path)
    return paths


def test_classify_prints_the_model_top5_with_probabilities(checkpoint: Path, tmp_path: Path, capsys) -> None:
    paths = write_images(tmp_path)
    assert main(["classify", "--checkpoint", str(checkpoint), *map(str, paths), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(paths[0]) and lines[6] == str(paths[1]) and len(lines) == 12
    probs = [float(line.split("%")[0].split(".", 1)[1]) / 100 for line in lines[1:6]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-3
    # The printed classes are the model's own ranking of the preprocessed image.
    model = formers.from_pretrained(checkpoint)
    prep = Preprocessing.load(checkpoint)
    from formers.data.images import read_image

    logits = model(prep(read_image(paths[1], 1)[None])).logits[0]
    expected = [CLASSES[i] for i in logits.topk(5).indices.tolist()]
    assert [line.split("%", 1)[1].strip() for line in lines[7:12]] == expected
    top = classify_images(checkpoint, [paths[1]], top_k=20)[0]
    assert len(top) == len(CLASSES) and sum(p for _, p in top) == pytest.approx(1.0, abs=1e-5)


def test_classify_errors_name_the_problem(checkpoint: Path, tmp_path: Path, capsys) -> None:
    good = write_images(tmp_path)[0]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["classify", "--checkpoint", str(checkpoint), str(good), str(bad)]) == 2
    assert f"cannot read image '{bad}'" in capsys.readouterr().err
    assert main(["classify", "--checkpoint", str(checkpoint), str(tmp_path / "nope.png")]) == 2
    assert "nope.png' does not exist" in capsys.readouterr().err
    (checkpoint / "preprocessing.json").unlink()
    assert main(["classify", "--checkpoint", str(checkpoint), str(good)]) == 2
    assert "preprocessing.json does not exist" in capsys.readouterr().err
    Preprocessing(CLASSES[:3], (8, 8), 1).save(checkpoint)
    with pytest.raises(ValueError, match="num_classes=8, but preprocessing.json names 3 classes"):
        classify_images(checkpoint, [good])
    with pytest.raises(ValueError, match="top_k must be an int >= 1, got 0"):
        classify_images(checkpoint, [good], top_k=0)
