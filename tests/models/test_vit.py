from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import formers
from formers.layers import SelfAttention, resample_grid_positions
from formers.models.vit import ViT, ViTConfig
from formers.registry import create_config

TINY = dict(image_size=16, patch_size=4, embed_dim=16, num_layers=2, num_heads=2, mlp_ratio=1.5, num_classes=5)


def _noisy(model: ViT) -> ViT:
    with torch.no_grad():  # larger weights than the init so that tokens differ visibly
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _images(model: ViT, b: int = 3, h: int | None = None, w: int | None = None) -> torch.Tensor:
    c = model.config
    return torch.randn(b, c.in_channels, h or c.image_size, w or c.image_size)


def test_published_variants():
    shapes = {n: create_config(n) for n in formers.list_models("vit_*_patch16_224")}
    assert {n: (c.embed_dim, c.num_layers, c.num_heads, c.mlp_dim, c.image_size) for n, c in shapes.items()} == {
        "vit_tiny_patch16_224": (192, 12, 3, 768, 224),
        "vit_small_patch16_224": (384, 12, 6, 1536, 224),
        "vit_base_patch16_224": (768, 12, 12, 3072, 224),
        "vit_large_patch16_224": (1024, 24, 16, 4096, 224),
    }
    with torch.device("meta"):
        counts = [sum(p.numel() for p in formers.create_model(n).parameters()) for n in sorted(shapes)]
    # timm's vit_base / large / small / tiny _patch16_224
    assert counts == [86_567_656, 304_326_632, 22_050_664, 5_717_416]
    mini = create_config("vit_mini_28")
    assert (mini.in_channels, mini.image_size, mini.num_classes, mini.grid_size) == (1, 28, 10, (7, 7))


def test_forward_features_head_and_pooling():
    model = _noisy(ViT(ViTConfig(**TINY))).eval()
    x = _images(model, h=16, w=24)
    features = model.forward_features(x)
    assert features.shape == (3, 1 + 4 * 6, 16)
    # The final LayerNorm has been applied: undo its affine part and every token is standardised.
    ln = model.norm
    standard = (features - ln.bias) / ln.weight
    torch.testing.assert_close(standard.mean(-1), torch.zeros(3, 25), atol=1e-4, rtol=0)
    torch.testing.assert_close(model.forward_head(features), model.head(features[:, 0]))
    torch.testing.assert_close(model(x).logits, model.forward_head(features))
    model.reset_classifier(5, global_pool="avg")
    torch.testing.assert_close(model.forward_head(features), model.head(features[:, 1:].mean(1)))
    with pytest.raises(ValueError, match="features must have shape"):
        model.forward_head(features[:, 0])


def test_reset_classifier_for_a_new_label_set(tmp_path):
    model = _noisy(ViT(ViTConfig(**TINY))).eval()
    x = _images(model)
    features = model.forward_features(x)
    model.reset_classifier(7)
    assert model.config.num_classes == 7 and model(x).logits.shape == (3, 7)
    model.reset_classifier(0)
    torch.testing.assert_close(model(x).logits, features[:, 0])  # identity head: the pooled features
    formers.save_pretrained(model, tmp_path / "m")
    assert formers.from_pretrained(tmp_path / "m").config.num_classes == 0
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(3, global_pool="max")


def test_position_tables_are_kept_out_of_weight_decay():
    from formers.training.optim import param_groups

    model = ViT(ViTConfig(**TINY))
    decayed = {id(p) for p in param_groups(model, 0.05)[0]["params"]}
    assert id(model.pos_embed) not in decayed and id(model.cls_token) not in decayed
    assert id(model.blocks[0].self_attn.qkv.weight) in decayed


def test_sdpa_and_math_backends_agree():
    model = _noisy(ViT(ViTConfig(**TINY))).eval()
    x = _images(model, h=20, w=12)
    fast = model(x).logits
    for m in model.modules():
        if isinstance(m, SelfAttention):
            m.backend = "math"
    torch.testing.assert_close(model(x).logits, fast, atol=1e-5, rtol=1e-5)


def test_new_resolution_resamples_positions():
    model = _noisy(ViT(ViTConfig(**TINY))).eval()
    assert model.position_embeddings((4, 4)) is model.pos_embed
    pos = model.position_embeddings((6, 2))
    assert pos.shape == (1, 1 + 12, 16)
    torch.testing.assert_close(pos[:, 0], model.pos_embed[:, 0])
    assert model(_images(model, h=24, w=8)).logits.shape == (3, 5)


@pytest.mark.parametrize("antialias", [True, False])
def test_resample_grid_positions_matches_references(antialias):
    timm_pos = pytest.importorskip("timm.layers")
    table = torch.randn(1, 1 + 5 * 5, 8)
    ours = resample_grid_positions(table[:, 1:], (5, 5), (7, 3), antialias=antialias)
    theirs = timm_pos.resample_abs_pos_embed(table, new_size=[7, 3], old_size=[5, 5], antialias=antialias)
    torch.testing.assert_close(ours, theirs[:, 1:], atol=0, rtol=0)
    assert resample_grid_positions(table[0, 1:], (5, 5), (5, 5)) is not None
    # Upsampling differs between the two kernels (a = -0.5 vs -0.75), which is why the flag exists.
    other = resample_grid_positions(table[:, 1:], (5, 5), (7, 3), antialias=not antialias)
    assert not torch.allclose(ours, other)
    with pytest.raises(ValueError, match="old_grid 4x4 needs 16"):
        resample_grid_positions(table[:, 1:], (4, 4), (2, 2))


def test_bad_inputs_raise_clear_errors():
    model = ViT(ViTConfig(**TINY)).eval()
    with pytest.raises(ValueError, match="3 channels, the model expects in_channels=1"):
        ViT(ViTConfig(**{**TINY, "in_channels": 1}))(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"17x16.*patch grid.*multiples of 4 \(e\.g\. 16x16\)"):
        model(torch.randn(2, 3, 17, 16))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.randn(2, 3, 2, 16))
    bad = torch.randn(2, 3, 16, 16)
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(bad)
    with pytest.raises(ValueError, match="empty batch"):
        model(torch.randn(0, 3, 16, 16))
    with pytest.raises(ValueError, match="shape \\(batch, channels, height, width\\)"):
        model(torch.randn(3, 16, 16))
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="image_size \\(30\\) must be a multiple of patch_size \\(4\\)"):
        ViTConfig(**{**TINY, "image_size": 30})
    with pytest.raises(ValueError, match="divisible by num_heads"):
        ViTConfig(**{**TINY, "num_heads": 3})
    with pytest.raises(ValueError, match="global_pool"):
        ViTConfig(**{**TINY, "global_pool": "max"})
    with pytest.raises(TypeError, match="unknown|valid"):
        formers.create_model("vit_micro_patch8_32", depth=3)


def test_stochastic_depth_rates_and_train_eval():
    model = ViT(ViTConfig(**{**TINY, "num_layers": 3, "drop_path_rate": 0.2}))
    assert [b.drop_path.p for b in model.blocks] == pytest.approx([0.0, 0.1, 0.2])
    x = _images(model, b=8)
    model.train()
    torch.manual_seed(1)
    a = model(x).logits
    torch.manual_seed(2)
    assert not torch.allclose(a, model(x).logits)  # different blocks dropped
    model.eval()
    torch.testing.assert_close(model(x).logits, model(x).logits, atol=0, rtol=0)


def test_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = ViT(ViTConfig(image_size=8, patch_size=4, in_channels=1, embed_dim=32, num_layers=2, num_heads=2,
                          num_classes=4))
    x, y = torch.randn(16, 1, 8, 8), torch.arange(16) % 4
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = F.cross_entropy(model(x).logits, y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 1.2 and loss.item() < 0.05
    assert (model.eval()(x).logits.argmax(-1) == y).all()
