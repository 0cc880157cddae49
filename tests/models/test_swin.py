from __future__ import annotations

import pytest
import torch

import formers
from formers.models.swin import SwinConfig, SwinTransformer

# Tiny overrides for every registered variant: two stages (8x8 and 4x4 maps) of 3x3 windows, padded and shifted.
TINY = dict(image_size=16, patch_size=2, embed_dim=8, depths=(2, 2), num_heads=(2, 2), window_size=3, num_classes=5,
            drop_path_rate=0.0)


def _noisy(model):
    with torch.no_grad():  # larger weights than the init so that every path visibly changes the logits
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _images(model, b=3, h=16, w=16):
    return torch.randn(b, model.config.in_channels, h, w)


def test_published_variants():
    from formers.registry import create_config

    shapes = {
        n: create_config(n)
        for n in ("swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224", "swin_base_patch4_window7_224")
    }
    got = {
        n: (c.embed_dim, c.depths, c.num_heads, c.window_size, c.patch_size, c.image_size) for n, c in shapes.items()
    }
    assert got == {
        "swin_tiny_patch4_window7_224": (96, (2, 2, 6, 2), (3, 6, 12, 24), 7, 4, 224),
        "swin_small_patch4_window7_224": (96, (2, 2, 18, 2), (3, 6, 12, 24), 7, 4, 224),
        "swin_base_patch4_window7_224": (128, (2, 2, 18, 2), (4, 8, 16, 32), 7, 4, 224),
    }
    # 56, 28, 14, 7: the last stage's map is one window, so it is not shifted
    assert shapes["swin_tiny_patch4_window7_224"].stage_windows() == [(7, 3), (7, 3), (7, 3), (7, 0)]
    mini = create_config("swin_mini_28")
    assert (mini.in_channels, mini.num_classes, mini.image_size) == (1, 10, 28)
    assert mini.stage_windows() == [(7, 3), (7, 0), (4, 0)]  # 14x14 -> 7x7 -> 4x4


@pytest.mark.slow
def test_parameter_counts_match_timm():
    timm = pytest.importorskip("timm")
    for name in ("swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224", "swin_base_patch4_window7_224"):
        with torch.device("meta"):
            theirs = sum(p.numel() for p in timm.create_model(name).parameters())
        assert sum(p.numel() for p in formers.create_model(name).parameters()) == theirs


def test_swin_tiny_parameter_count():
    model = SwinTransformer(SwinConfig(drop_path_rate=0.0))
    assert sum(p.numel() for p in model.parameters()) == 28_288_354  # timm swin_tiny_patch4_window7_224


def test_features_head_and_reset_classifier():
    model = _noisy(SwinTransformer(SwinConfig(**TINY))).eval()
    images = _images(model, b=2, h=20, w=14)  # patch grid 10x7 -> 5x4 after merging
    features = model.forward_features(images)
    assert features.shape == (2, 5, 4, 16)
    torch.testing.assert_close(model.forward_head(features), model(images).logits, rtol=0, atol=0)
    model.reset_classifier(0)
    assert model.config.num_classes == 0
    torch.testing.assert_close(model(images).logits, features.mean(dim=(1, 2)), rtol=0, atol=0)
    model.reset_classifier(7)
    assert model.config.num_classes == 7 and model(images).logits.shape == (2, 7)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)


def test_sdpa_and_math_backends_agree():
    model = _noisy(SwinTransformer(SwinConfig(**TINY))).eval()
    images = _images(model, b=2, h=18, w=26)  # padded to whole patches and windows, shifted stage 1
    fast = model(images).logits
    for module in model.modules():
        if hasattr(module, "backend"):
            module.backend = "math"
    torch.testing.assert_close(model(images).logits, fast, rtol=1e-5, atol=1e-5)


def test_shifted_blocks_and_padding_change_the_output():
    model = _noisy(SwinTransformer(SwinConfig(**TINY))).eval()
    images = _images(model, b=1, h=16, w=16)
    shifted = model(images).logits
    for stage in model.stages:
        stage.shift_size = 0
    assert not torch.allclose(model(images).logits, shifted, atol=1e-4)


def test_every_image_size_is_padded_like_hugging_face():
    model = SwinTransformer(SwinConfig(**TINY)).eval()
    for h, w in [(1, 1), (5, 3), (16, 16), (33, 17)]:
        assert model(_images(model, b=1, h=h, w=w)).logits.shape == (1, 5)


def test_bf16_autocast_runs():
    model = SwinTransformer(SwinConfig(**TINY))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(_images(model)).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_stochastic_depth_rates_and_train_mode():
    model = _noisy(SwinTransformer(SwinConfig(**{**TINY, "drop_path_rate": 0.3})))
    rates = [b.drop_path1.p for s in model.stages for b in s.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    images = _images(model)
    model.train()
    a, b = model(images).logits, model(images).logits
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model(images).logits, model(images).logits, rtol=0, atol=0)


@pytest.mark.parametrize(
    "images,error,match",
    [
        (torch.randn(2, 1, 16, 16), ValueError, "in_channels=3"),
        (torch.zeros(0, 3, 16, 16), ValueError, "empty batch"),
        (torch.randn(3, 16, 16), ValueError, r"\(batch, channels, height, width\)"),
        (torch.zeros(2, 3, 16, 16, dtype=torch.long), TypeError, "floating"),
        (torch.full((1, 3, 16, 16), float("nan")), ValueError, "NaN"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input(images, error, match):
    model = SwinTransformer(SwinConfig(**TINY))
    with pytest.raises(error, match=match):
        model(images)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(num_heads=(2, 3)), "num_heads"),
        (dict(depths=(2,)), "one positive entry per stage"),
        (dict(window_size=0), "window_size"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
    ],
)
def test_bad_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        SwinConfig(**{**TINY, **overrides})


def test_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = SwinTransformer(SwinConfig(**{**TINY, "num_classes": 4, "embed_dim": 16, "num_heads": (2, 4)}))
    images, labels = torch.randn(16, 3, 16, 16), torch.arange(16) % 4
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(images).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(images).logits.argmax(-1) == labels).all()
    assert torch.nn.functional.cross_entropy(model(images).logits, labels) < 0.1
