"""Parity of formers' ViT with timm's ``VisionTransformer`` and Hugging Face ``ViTForImageClassification`` /
``ViTModel`` through ``formers.interop.vit``.

Tiny random reference models of several shapes are converted and compared in float32 (eval mode, 1e-5) at their
own resolution and at new ones (timm ``dynamic_img_size=True``, Hugging Face ``interpolate_pos_encoding=True``);
the inverse conversions load back into timm / ``transformers`` with the same logits.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
from transformers import ViTConfig as HFViTConfig  # noqa: E402
from transformers import ViTForImageClassification, ViTModel  # noqa: E402

import formers  # noqa: E402
from formers.interop.timm import from_timm  # noqa: E402
from formers.interop.vit import (  # noqa: E402
    config_from_hf_vit,
    convert_hf_vit_state_dict,
    load_timm_vit,
    save_vit_directory,
    timm_vit_config,
    to_hf_vit_state_dict,
    to_timm_vit_state_dict,
)
from formers.models.vit import ViT, ViTConfig  # noqa: E402

ATOL = RTOL = 1e-5

# name -> (timm model name, create_model kwargs, formers overrides, resolutions (H, W) besides the native one)
TIMM_CASES = {
    "tiny-rgb": ("vit_tiny_patch16_224", dict(embed_dim=32, depth=2, num_heads=2, img_size=32, patch_size=8,
                                               num_classes=5), {"num_heads": 2}, [(48, 64), (16, 24)]),
    "gray-deep": ("vit_small_patch16_224", dict(embed_dim=24, depth=3, num_heads=3, img_size=28, patch_size=4,
                                                in_chans=1, num_classes=10, mlp_ratio=2.5), {"num_heads": 3},
                  [(20, 36)]),
    "avg-pool": ("vit_base_patch16_224", dict(embed_dim=16, depth=1, num_heads=4, img_size=24, patch_size=6,
                                              num_classes=3, global_pool="avg", fc_norm=False),
                 {"num_heads": 4, "global_pool": "avg"}, [(36, 18)]),
    "no-head": ("vit_tiny_patch16_224", dict(embed_dim=32, depth=1, num_heads=1, img_size=16, patch_size=4,
                                             num_classes=0), {"num_heads": 1}, [(24, 24)]),
}


def _noisy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.2 * noise if ("norm" in name and p.dim() == 1 and "weight" in name) else 0.3 * noise)
    return model.eval()


def _timm(case: str) -> tuple[str, torch.nn.Module, dict]:
    name, kwargs, overrides, _ = TIMM_CASES[case]
    return name, _noisy(timm.create_model(name, pretrained=False, dynamic_img_size=True, **kwargs)), overrides


@pytest.mark.parametrize("case", list(TIMM_CASES))
def test_timm_logits_match_at_several_resolutions(case):
    name, ref, overrides = _timm(case)
    ours = from_timm(name, ref.state_dict(), overrides)
    assert isinstance(ours, ViT) and not ours.training
    native = ref.patch_embed.img_size
    with torch.no_grad():
        for h, w in [native, *TIMM_CASES[case][3]]:
            x = torch.randn(2, ref.patch_embed.proj.in_channels, h, w)
            torch.testing.assert_close(ours(x).logits, ref(x), atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(ours.forward_features(x), ref.forward_features(x), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("case", list(TIMM_CASES))
def test_timm_inverse_round_trip(case):
    name, ref, overrides = _timm(case)
    ours = load_timm_vit(name, ref.state_dict(), overrides)
    back = to_timm_vit_state_dict(ours)
    assert back.keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert torch.equal(back[k], v), k
    fresh = timm.create_model(name, pretrained=False, dynamic_img_size=True, **TIMM_CASES[case][1]).eval()
    fresh.load_state_dict(back, strict=True)
    x = torch.randn(2, ref.patch_embed.proj.in_channels, *ref.patch_embed.img_size)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), ours(x).logits, atol=ATOL, rtol=RTOL)


def test_timm_config_from_the_name_and_shapes():
    with torch.device("meta"):
        ref = timm.create_model("vit_small_patch16_224", pretrained=False)
    config = timm_vit_config("vit_small_patch16_224", ref.state_dict())
    assert config == ViTConfig(embed_dim=384, num_heads=6, num_layers=12, image_size=224, patch_size=16,
                               num_classes=1000, mlp_ratio=4.0, layer_norm_eps=1e-6)
    with pytest.raises(ValueError, match="num_heads"):
        timm_vit_config("vit_small_patch16_224", {**ref.state_dict(), "pos_embed": ref.pos_embed,
                                                  "patch_embed.proj.weight": torch.empty(32, 3, 16, 16)})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(reg_tokens=2), "register tokens"),
        (dict(init_values=1e-5), "LayerScale"),
        (dict(qk_norm=True), "q/k normalisation"),
        (dict(global_pool="avg"), "fc_norm"),
        (dict(qkv_bias=False), "qkv bias"),
        (dict(class_token=False, global_pool="avg", fc_norm=False), "class token"),
    ],
)
def test_timm_unsupported_options_raise(kwargs, message):
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, embed_dim=16, depth=1, num_heads=2,
                            img_size=16, patch_size=8, **kwargs)
    with pytest.raises(ValueError, match=message):
        from_timm("vit_tiny_patch16_224", ref.state_dict(), {"num_heads": 2})


# name -> (HF config kwargs, new resolutions)
HF_CASES = {
    "small": (dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32,
                   patch_size=8, num_labels=5), [(48, 64), (16, 32)]),
    "gray": (dict(hidden_size=24, num_hidden_layers=3, num_attention_heads=3, intermediate_size=48, image_size=28,
                  patch_size=4, num_channels=1, num_labels=10, layer_norm_eps=1e-6), [(20, 36)]),
    "one-layer": (dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                       image_size=24, patch_size=6, num_labels=3), [(36, 18)]),
}


def _hf(cls, case: str):
    config = HFViTConfig(**HF_CASES[case][0])
    return _noisy(cls(config))


@pytest.mark.parametrize("case", list(HF_CASES))
def test_hf_logits_match_at_several_resolutions(case, tmp_path):
    hf = _hf(ViTForImageClassification, case)
    hf.save_pretrained(tmp_path / "hf")
    ours = formers.from_pretrained(tmp_path / "hf")
    assert isinstance(ours, ViT) and ours.config.pos_embed_antialias is False
    size, channels = hf.config.image_size, hf.config.num_channels
    with torch.no_grad():
        for h, w in [(size, size), *HF_CASES[case][1]]:
            x = torch.randn(2, channels, h, w)
            theirs = hf(x, interpolate_pos_encoding=True)
            torch.testing.assert_close(ours(x).logits, theirs.logits, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("case", list(HF_CASES))
def test_hf_inverse_round_trip(case, tmp_path):
    hf = _hf(ViTForImageClassification, case)
    state = hf.state_dict()
    ours = ViT(config_from_hf_vit(hf.config.to_dict(), hf.config.num_labels))
    ours.load_state_dict(convert_hf_vit_state_dict(state))
    save_vit_directory(ours.eval(), tmp_path / "back")
    reloaded = ViTForImageClassification.from_pretrained(tmp_path / "back").eval()
    x = torch.randn(2, hf.config.num_channels, hf.config.image_size, hf.config.image_size)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, hf(x).logits, atol=ATOL, rtol=RTOL)
    hf.save_pretrained(tmp_path / "hf")
    saved = load_file(tmp_path / "hf" / "model.safetensors")
    back = to_hf_vit_state_dict(ours)
    assert back.keys() == saved.keys()
    for k, v in saved.items():
        assert torch.equal(back[k], v), k


def test_hf_vit_model_without_classifier(tmp_path):
    hf = _hf(ViTModel, "small")
    hf.save_pretrained(tmp_path / "hf")
    with pytest.warns(UserWarning, match="pooler"):
        ours = formers.from_pretrained(tmp_path / "hf")
    assert ours.config.num_classes == 0
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        theirs = hf(x).last_hidden_state
        torch.testing.assert_close(ours.forward_features(x), theirs, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(ours(x).logits, theirs[:, 0], atol=ATOL, rtol=RTOL)
    save_vit_directory(ours, tmp_path / "back")
    assert json.loads((tmp_path / "back" / "config.json").read_text())["architectures"] == ["ViTModel"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reloaded = ViTModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).last_hidden_state, theirs, atol=ATOL, rtol=RTOL)


def test_hf_unsupported_options_raise(tmp_path):
    hf = _hf(ViTForImageClassification, "small")
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        config_from_hf_vit({**hf.config.to_dict(), "hidden_act": "relu"}, 5)
    with pytest.raises(ValueError, match="qkv_bias=False"):
        config_from_hf_vit({**hf.config.to_dict(), "qkv_bias": False}, 5)
    with pytest.raises(ValueError, match="not square"):
        config_from_hf_vit({**hf.config.to_dict(), "image_size": [32, 48]}, 5)
    avg = ViT(ViTConfig(image_size=16, patch_size=8, embed_dim=16, num_layers=1, num_heads=2, global_pool="avg"))
    with pytest.raises(ValueError, match="global_pool='avg'"):
        save_vit_directory(avg, tmp_path / "avg")
