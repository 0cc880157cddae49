"""Tests for formers.data.image_transforms: batched crops/flips, MixUp/CutMix targets, smoothing, preprocessing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from formers.data.image_transforms import (
    MixUpCutMix,
    Preprocessing,
    channel_mean_std,
    normalize_images,
    random_crop_flip,
)
from formers.tasks.losses import soft_target_cross_entropy


def test_random_crops_are_per_image_windows_of_the_padded_batch() -> None:
    images = torch.randint(1, 256, (16, 2, 5, 6), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(images, 0, False), images)
    out = random_crop_flip(images, padding=2)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = F.pad(images, (2, 2, 2, 2))
    offsets = []
    for b in range(16):
        windows = {(dy, dx): padded[b, :, dy : dy + 5, dx : dx + 6] for dy in range(5) for dx in range(5)}
        hits = [offset for offset, window in windows.items() if torch.equal(window, out[b])]
        assert hits, f"image {b} is not a crop of its padded self"
        offsets.append(hits[0])
    assert len(set(offsets)) > 3  # each image draws its own offset


def test_flips_mirror_a_random_subset() -> None:
    images = torch.rand(64, 1, 3, 4)
    out = random_crop_flip(images, 0, flip=True)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54
    with pytest.raises(ValueError, match="padding must be >= 0"):
        random_crop_flip(images, -1)


def test_mixup_targets_are_convex_mixtures_of_the_rolled_batch() -> None:
    x, y = torch.rand(8, 1, 4, 4), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    mixed, targets = MixUpCutMix(4, mixup_alpha=1.0)(x, y)
    assert targets.shape == (8, 4) and torch.allclose(targets.sum(-1), torch.ones(8))
    lam = float(targets[0, 0])  # image 0 (class 0) mixed with image 7 (class 3)
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)
    assert torch.allclose(targets, lam * F.one_hot(y, 4) + (1 - lam) * F.one_hot(y.roll(1), 4))


def test_cutmix_pastes_a_box_and_weights_targets_by_its_area() -> None:
    x, y = torch.zeros(4, 1, 8, 8), torch.arange(4)
    x[:, 0] = torch.arange(4, dtype=torch.float32)[:, None, None]  # image i is filled with i
    mixed, targets = MixUpCutMix(4, cutmix_alpha=1.0, prob=1.0)(x, y)
    pasted = (mixed[1] == 0).float().mean()  # pixels of image 1 taken from image 0
    assert torch.allclose(targets[1], torch.tensor([float(pasted), 1 - float(pasted), 0.0, 0.0]), atol=1e-6)


def test_mixing_off_gives_one_hot_targets_and_checks_arguments() -> None:
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([2, 0, 1])
    for mix in (MixUpCutMix(3), MixUpCutMix(3, mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.0)):
        out, targets = mix(x, y)
        assert out is x and torch.equal(targets, F.one_hot(y, 3).float())
    with pytest.raises(ValueError, match="mixup_alpha must be >= 0"):
        MixUpCutMix(3, mixup_alpha=-1)
    with pytest.raises(ValueError, match=r"switch_prob must be in \[0, 1\]"):
        MixUpCutMix(3, switch_prob=2)


def test_soft_target_loss_matches_cross_entropy_with_label_smoothing() -> None:
    logits, y = torch.randn(5, 7), torch.randint(0, 7, (5,))
    onehot = F.one_hot(y, 7).float()
    for eps in (0.0, 0.1):
        ref = F.cross_entropy(logits, y, label_smoothing=eps)
        assert torch.allclose(soft_target_cross_entropy(logits, onehot, eps), ref, atol=1e-6)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        soft_target_cross_entropy(logits, onehot, 1.0)


def test_preprocessing_normalises_resizes_and_round_trips(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (100, 3, 6, 6), dtype=torch.uint8)
    mean, std = channel_mean_std(images, chunk=7)
    ref = images.double() / 255
    assert mean == pytest.approx(ref.mean(dim=(0, 2, 3)).tolist(), abs=1e-4)
    assert std == pytest.approx(ref.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-4)
    prep = Preprocessing(["a", "b"], (6, 6), 3, mean, std)
    x = prep(images)
    assert x.dtype == torch.float32 and torch.allclose(x, normalize_images(images, mean, std))
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.01 and (x.std(dim=(0, 2, 3)) - 1).abs().max() < 0.01
    assert prep(images[:2, :, :3, :4]).shape == (2, 3, 6, 6)  # other sizes are resized
    path = prep.save(tmp_path)
    assert path.name == "preprocessing.json" and Preprocessing.load(tmp_path) == prep
    path.write_text("{")
    with pytest.raises(ValueError, match="corrupt"):
        Preprocessing.load(path)
    with pytest.raises(FileNotFoundError, match="class names and normalisation"):
        Preprocessing.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match=r"one value per channel \(3\)"):
        Preprocessing(["a"], (2, 2), 3, [0.5], [0.5])
