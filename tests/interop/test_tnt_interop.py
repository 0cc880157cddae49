from __future__ import annotations

import pytest
import torch

from formers.interop.timm import from_timm
from formers.interop.tnt import (
    config_from_timm_tnt,
    convert_timm_tnt_state_dict,
    to_timm_tnt_state_dict,
)
from formers.models.tnt import TNT, TNTLegacy
from formers.registry import create_config

timm = pytest.importorskip("timm")

# (timm model name, timm kwargs, overrides the name and shapes cannot tell)
SHAPES = [
    ("tnt_s_patch16_224", dict(embed_dim=32, inner_dim=8, depth=2, num_heads_outer=2, num_heads_inner=2,
                               img_size=32, patch_size=8, num_classes=7),
     dict(num_heads=2, inner_num_heads=2, patch_size=8)),
    ("tnt_s_patch16_224", dict(embed_dim=48, inner_dim=12, depth=3, num_heads_outer=4, num_heads_inner=3,
                               img_size=48, first_stride=2, qkv_bias=True, in_chans=1, num_classes=0,
                               mlp_ratio=2.0),
     dict(num_heads=4, inner_num_heads=3)),
    ("tnt_b_patch16_224", dict(embed_dim=40, inner_dim=16, depth=1, num_heads_outer=5, num_heads_inner=4,
                               img_size=64, first_stride=3, num_classes=3),
     dict(num_heads=5, inner_num_heads=4)),
]


def _random_timm(name: str, kwargs: dict) -> torch.nn.Module:
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    with torch.no_grad():  # move every weight off its init (LayerNorms at 1/0, zero biases) so each one matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("name,kwargs,overrides", SHAPES)
def test_tiny_timm_models_give_the_same_logits(name, kwargs, overrides):
    reference = _random_timm(name, kwargs)
    ours = from_timm(name, reference.state_dict(), overrides)
    assert isinstance(ours, TNT) and not ours.training
    c = ours.config
    assert (c.num_layers, c.embed_dim, c.inner_dim, c.image_size) == (
        kwargs["depth"], kwargs["embed_dim"], kwargs["inner_dim"], kwargs["img_size"])
    assert c.pixel_stride == kwargs.get("first_stride", 4) and c.qkv_bias == kwargs.get("qkv_bias", False)
    images = torch.randn(3, kwargs.get("in_chans", 3), kwargs["img_size"], kwargs["img_size"])
    with torch.no_grad():
        expected = reference(images)
        got = ours(images).logits
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.forward_features(images), reference.forward_features(images),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,kwargs,overrides", SHAPES[:2])
def test_inverse_conversion_loads_into_timm(name, kwargs, overrides):
    reference = _random_timm(name, kwargs)
    ours = from_timm(name, reference.state_dict(), overrides)
    with torch.no_grad():  # change our weights, convert back, and timm must compute our new logits
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    back = to_timm_tnt_state_dict(ours)
    fresh = timm.create_model(name, pretrained=False, **kwargs).eval()
    fresh.load_state_dict(back, strict=True)
    images = torch.randn(2, kwargs.get("in_chans", 3), kwargs["img_size"], kwargs["img_size"])
    with torch.no_grad():
        torch.testing.assert_close(fresh(images), ours(images).logits, atol=1e-5, rtol=1e-5)
    # exact round trip of the state dict itself
    again = convert_timm_tnt_state_dict(back)
    for key, tensor in ours.state_dict().items():
        assert torch.equal(again[key], tensor), key


def test_published_shapes_need_no_overrides():
    reference = timm.create_model("tnt_s_patch16_224", pretrained=False)
    config = config_from_timm_tnt("tnt_s_patch16_224.in1k", reference.state_dict(), {})
    assert config == create_config("tnt_s_patch16_224", drop_path_rate=0.0)


def test_what_the_weights_cannot_tell_must_be_given():
    kwargs, overrides = SHAPES[0][1], SHAPES[0][2]
    state = _random_timm("tnt_s_patch16_224", kwargs).state_dict()
    with pytest.raises(ValueError, match="num_heads"):
        from_timm("tnt_s_patch16_224", state, {"patch_size": 8})
    with pytest.raises(ValueError, match="inner_num_heads"):
        from_timm("tnt_s_patch16_224", state, {"patch_size": 8, "num_heads": 2})
    with pytest.raises(ValueError, match="pixel_stride"):  # the name says patch16: 2x2 pixels fit strides 8..15
        from_timm("tnt_s_patch16_224", state, {"num_heads": 2, "inner_num_heads": 2})
    ok = from_timm("tnt_s_patch16_224", state, {**overrides, "drop_path_rate": 0.2})
    assert ok.config.drop_path_rate == 0.2


LEGACY = dict(embed_dim=32, inner_dim=8, depth=2, num_heads_outer=2, num_heads_inner=2, img_size=32, patch_size=8,
              num_classes=4)


@pytest.mark.parametrize("kwargs", [LEGACY, {**LEGACY, "first_stride": 2, "qkv_bias": True, "in_chans": 2}])
def test_legacy_tnt_gives_the_same_logits_and_round_trips(kwargs):
    reference = _random_timm("tnt_s_legacy_patch16_224", kwargs)
    overrides = dict(num_heads=2, inner_num_heads=2, patch_size=8)
    for name in ("tnt_s_legacy_patch16_224", "tnt_s_patch16_224"):  # the layout is read from the weights
        ours = from_timm(name, reference.state_dict(), overrides)
        assert type(ours) is TNTLegacy and ours.config.pixel_stride == kwargs.get("first_stride", 4)
    images = torch.randn(2, kwargs.get("in_chans", 3), 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(images).logits, reference(images), atol=1e-5, rtol=1e-5)
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
        fresh = timm.create_model("tnt_s_legacy_patch16_224", pretrained=False, **kwargs).eval()
        fresh.load_state_dict(to_timm_tnt_state_dict(ours), strict=True)
        torch.testing.assert_close(fresh(images), ours(images).logits, atol=1e-5, rtol=1e-5)


def test_unknown_models_are_refused():
    with pytest.raises(ValueError, match="tnt_s_patch16_224"):
        from_timm("tnt_xl_patch16_224", {}, {})
    with pytest.raises(KeyError, match="cls_token"):
        from_timm("tnt_s_patch16_224", {"blocks.0.norm2_proj.weight": torch.zeros(1)}, {})
