from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import formers
from formers.models.tnt import TNT, TNTConfig, TNTLegacy
from formers.registry import create_config

TINY = dict(image_size=16, patch_size=8, embed_dim=16, inner_dim=8, num_layers=2, num_heads=2, inner_num_heads=2,
            num_classes=5, pixel_stride=4)


def _noisy(model: TNT) -> TNT:
    with torch.no_grad():  # larger weights than the init so that tokens and rows differ visibly
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _images(model: TNT, b: int = 2) -> torch.Tensor:
    c = model.config
    return torch.randn(b, c.in_channels, c.image_size, c.image_size)


def test_published_variants_match_the_paper():
    s, b = create_config("tnt_s_patch16_224"), create_config("tnt_b_patch16_224")
    assert (s.embed_dim, s.inner_dim, s.num_heads, s.inner_num_heads, s.num_layers) == (384, 24, 6, 4, 12)
    assert (b.embed_dim, b.inner_dim, b.num_heads, b.inner_num_heads, b.num_layers) == (640, 40, 10, 4, 12)
    assert s.num_patches == 196 and s.num_pixels == 16 and s.drop_path_rate == 0.1
    mini = create_config("tnt_mini_28")
    assert (mini.image_size, mini.in_channels, mini.num_classes) == (28, 1, 10)


def test_tnt_s_parameter_count_matches_timm():
    model = formers.create_model("tnt_s_patch16_224")
    assert sum(p.numel() for p in model.parameters()) == 23_768_584  # timm tnt_s_patch16_224


def test_features_head_and_reset_classifier():
    model = _noisy(TNT(TNTConfig(**TINY))).eval()
    images = _images(model)
    features = model.forward_features(images)
    assert features.shape == (2, 1 + 4, 16)
    torch.testing.assert_close(model.forward_head(features), model(images).logits)
    model.reset_classifier(3)
    assert model.config.num_classes == 3 and model(images).logits.shape == (2, 3)
    model.reset_classifier(0)
    assert model.config.num_classes == 0
    torch.testing.assert_close(model(images).logits, features[:, 0])  # pooled features: the class token
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)


def test_sdpa_and_math_backends_agree():
    model = _noisy(TNT(TNTConfig(**TINY))).eval()
    images = _images(model)
    attns = [m for m in model.modules() if isinstance(m, formers.layers.SelfAttention)]
    outs = []
    for backend in ("sdpa", "math"):
        for attn in attns:
            attn.backend = backend
        outs.append(model(images).logits)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_drop_path_rates_rise_over_blocks_and_only_act_in_training():
    model = TNT(TNTConfig(**{**TINY, "num_layers": 3, "drop_path_rate": 0.3}))
    assert [b.drop_path.p for b in model.blocks] == pytest.approx([0.0, 0.15, 0.3])
    images = _images(model)
    model.eval()
    torch.testing.assert_close(model(images).logits, model(images).logits, rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(images).logits, model(images).logits)


def test_pixel_tokens_see_only_their_own_patch():
    # Changing one patch's pixels changes that patch's pixel tokens only (per-patch convolution, zero padding).
    model = TNT(TNTConfig(**TINY)).eval()
    images = _images(model, 1)
    pixels = model.pixel_embed(images)  # (N, n*n, c)
    changed = images.clone()
    changed[..., :8, :8] += 1.0  # patch 0
    pixels2 = model.pixel_embed(changed)
    assert not torch.allclose(pixels[0], pixels2[0])
    torch.testing.assert_close(pixels[1:], pixels2[1:], rtol=0, atol=0)


def test_bad_inputs_raise_clear_errors():
    model = TNT(TNTConfig(**TINY)).eval()
    with pytest.raises(ValueError, match="3 channels, the model expects in_channels=3|has 1 channels"):
        model(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"size 16x24.*exactly 16x16"):
        model(torch.randn(2, 3, 16, 24))
    with pytest.raises(ValueError, match=r"size 32x32.*exactly 16x16"):
        model(torch.randn(1, 3, 32, 32))
    nan = torch.randn(1, 3, 16, 16)
    nan[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(nan)
    with pytest.raises(ValueError, match="empty batch"):
        model(torch.randn(0, 3, 16, 16))
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(3, 16, 16))
    with pytest.raises(ValueError, match="must be a multiple of patch_size"):
        TNTConfig(image_size=30, patch_size=16)
    with pytest.raises(ValueError, match="divisible by inner_num_heads"):
        TNTConfig(inner_dim=10, inner_num_heads=4)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        TNTConfig(embed_dim=100, num_heads=6)


def test_legacy_pixels_see_across_patch_borders_and_need_whole_pixel_grids():
    model = TNTLegacy(TNTConfig(**TINY)).eval()
    images = _images(model, 1)
    changed = images.clone()
    changed[..., 0, 7] += 1.0  # a pixel of patch 0 within the 7x7 kernel's reach of patch 1, not of the lower row
    pixels, pixels2 = model.pixel_embed(images), model.pixel_embed(changed)
    assert not torch.allclose(pixels[1], pixels2[1])
    torch.testing.assert_close(pixels[2:], pixels2[2:], rtol=0, atol=0)  # patches of the lower row
    with pytest.raises(ValueError, match="multiple of stride"):
        TNTLegacy(TNTConfig(**{**TINY, "pixel_stride": 3}))


def test_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = TNT(TNTConfig(**{**TINY, "in_channels": 1, "num_classes": 4}))
    images = torch.randn(8, 1, 16, 16)
    labels = torch.arange(8) % 4
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(model(images).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert (model.eval()(images).logits.argmax(-1) == labels).all()


FASHION = Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def test_short_fashion_mnist_run_learns():
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST is absent from {FASHION} (apt-get install dataset-fashion-mnist)")
    torch.manual_seed(0)
    images = torch.tensor(_read_idx(FASHION / "train-images-idx3-ubyte.gz")[:3000]).float().div(255)[:, None]
    labels = torch.tensor(_read_idx(FASHION / "train-labels-idx1-ubyte.gz")[:3000]).long()
    test_x = torch.tensor(_read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:1000]).float().div(255)[:, None]
    test_y = torch.tensor(_read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:1000]).long()
    model = formers.create_model("tnt_mini_28", patch_size=7, pixel_stride=4, embed_dim=48, inner_dim=8,
                                 num_layers=2, num_heads=2, inner_num_heads=2, drop_path_rate=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(100):
        idx = torch.randint(0, len(images), (64,))
        loss = torch.nn.functional.cross_entropy(model((images[idx] - 0.286) / 0.353).logits, labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model((test_x - 0.286) / 0.353).logits.argmax(-1) == test_y).float().mean().item()
    assert accuracy > 0.45  # chance is 0.1; 0.56 after these 100 steps
