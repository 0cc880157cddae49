"""Parity of formers' Swin with ``timm`` ``swin_*`` and Hugging Face ``SwinForImageClassification``.

Tiny random reference models of several shapes are converted with ``formers.from_timm`` / ``formers.from_pretrained``
and compared in float32 (1e-5), on non-square inputs padded to whole patches and windows for Hugging Face; the
inverse conversions (formers -> timm state dict, formers -> Hugging Face directory) are checked too.
"""

from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
from transformers import SwinConfig as HFSwinConfig  # noqa: E402
from transformers import SwinForImageClassification  # noqa: E402

import formers  # noqa: E402
from formers.interop.swin import (  # noqa: E402
    TIMM_KEY_MAP,
    config_from_hf,
    convert_hf_state_dict,
    convert_timm_state_dict,
    save_swin_directory,
    to_hf_state_dict,
    to_timm_state_dict,
)
from formers.models.swin import SwinTransformer  # noqa: E402

ATOL = RTOL = 1e-5

TIMM_CASES = {
    # name, create_model kwargs, input size (timm takes only its img_size)
    "2-stages-window7": dict(img_size=56, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=7, num_classes=5),
    "3-stages-window4": dict(img_size=64, embed_dim=12, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=4,
                             num_classes=3),
    "shrunk-window": dict(img_size=32, patch_size=2, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                          window_size=4, num_classes=7, in_chans=1, mlp_ratio=2.0),
}


def _noisy(model):
    with torch.no_grad():  # larger than the init (zero biases, unit norms), so every parameter matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _timm(kw):
    return _noisy(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **kw))


@pytest.mark.parametrize("case", TIMM_CASES)
def test_timm_logits_match(case):
    kw = TIMM_CASES[case]
    ref = _timm(kw)
    model = formers.from_timm("swin_tiny_patch4_window7_224", ref.state_dict())
    assert isinstance(model, SwinTransformer) and not model.training
    c = model.config
    assert (c.embed_dim, c.depths, c.num_classes, c.in_channels) == (
        kw["embed_dim"], kw["depths"], kw["num_classes"], kw.get("in_chans", 3)
    )
    images = torch.randn(2, kw.get("in_chans", 3), kw["img_size"], kw["img_size"])
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, ref(images), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(model.forward_features(images), ref.forward_features(images), rtol=RTOL, atol=ATOL)


def test_timm_shrunk_windows_follow_the_reference_rule():
    model = formers.from_timm("swin_tiny_patch4_window7_224", _timm(TIMM_CASES["shrunk-window"]).state_dict())
    # 16x16 -> 8 -> 4 -> 2: stage 3's map is one window (not shifted), stage 4's window shrinks to its map; the
    # shrunk bias table tells the image size (the name says 224)
    assert model.config.image_size == 32
    assert model.config.stage_windows() == [(4, 2), (4, 2), (4, 0), (2, 0)]


def test_timm_inverse_and_old_layout():
    kw = TIMM_CASES["3-stages-window4"]
    ref = _timm(kw)
    model = formers.from_timm("swin_tiny_patch4_window7_224", ref.state_dict())
    back = to_timm_state_dict(model)
    assert set(back) == set(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(back[k], v), k
    # timm < 0.9: patch merging closes each stage (layers.N.downsample for N < last), head unwrapped, buffers stored
    old = {}
    for k, v in ref.state_dict().items():
        if ".downsample." in k:
            i = int(k.split(".")[1])
            k = k.replace(f"layers.{i}.", f"layers.{i - 1}.", 1)
        old[k.replace("head.fc.", "head.")] = v
    old["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    assert convert_timm_state_dict(old).keys() == convert_timm_state_dict(ref.state_dict()).keys()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(formers.from_timm("swin_tiny_patch4_window7_224", old)(images).logits, ref(images))


def test_timm_unknown_keys_raise():
    state = _timm(TIMM_CASES["2-stages-window7"]).state_dict()
    state["layers.0.blocks.0.attn.extra.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="match no rule"):
        formers.from_timm("swin_tiny_patch4_window7_224", state)
    assert TIMM_KEY_MAP.to_ours  # the map is public for other converters


HF_CASES = {
    # HF config kwargs, input sizes (non-square ones padded to whole patches / windows)
    "2-stages-window7": (dict(image_size=56, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=7,
                              num_labels=5), [(56, 56), (50, 61)]),
    "3-stages-window4": (dict(image_size=64, patch_size=4, embed_dim=12, depths=[2, 2, 2], num_heads=[1, 2, 4],
                              window_size=4, num_labels=3), [(64, 64), (60, 92), (52, 70)]),
    "patch2-window5-gray": (dict(image_size=40, patch_size=2, num_channels=1, embed_dim=8, depths=[2, 2],
                                 num_heads=[2, 2], window_size=5, mlp_ratio=3.0, num_labels=4, layer_norm_eps=1e-6),
                            [(40, 40), (30, 46)]),
}


def _hf(kw):
    return _noisy(SwinForImageClassification(HFSwinConfig(**kw)))


@pytest.mark.parametrize("case", HF_CASES)
def test_hugging_face_logits_match_on_padded_non_square_inputs(case, tmp_path):
    kw, sizes = HF_CASES[case]
    ref = _hf(kw)
    ref.save_pretrained(tmp_path)
    model = formers.from_pretrained(tmp_path)
    assert isinstance(model, SwinTransformer) and model.config.num_classes == kw["num_labels"]
    for h, w in sizes:
        images = torch.randn(2, kw.get("num_channels", 3), h, w)
        with torch.no_grad():
            torch.testing.assert_close(model(images).logits, ref(images).logits, rtol=RTOL, atol=ATOL)


def test_hugging_face_in_memory_names_convert_too():
    kw, sizes = HF_CASES["3-stages-window4"]
    ref = _hf(kw)
    state = ref.state_dict()
    assert any(".q_proj." in k for k in state)  # transformers 5 names, not the hub's
    model = SwinTransformer(config_from_hf(ref.config.to_dict()))
    model.load_state_dict(convert_hf_state_dict(state))
    images = torch.randn(1, 3, *sizes[1])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images).logits, ref(images).logits, rtol=RTOL, atol=ATOL)


def test_save_swin_directory_loads_in_hugging_face(tmp_path):
    kw, sizes = HF_CASES["patch2-window5-gray"]
    model = formers.from_pretrained(_save(_hf(kw), tmp_path / "hf"))
    save_swin_directory(model, tmp_path / "ours")
    back = SwinForImageClassification.from_pretrained(tmp_path / "ours").eval()
    images = torch.randn(2, 1, *sizes[1])
    with torch.no_grad():
        torch.testing.assert_close(back(images).logits, model(images).logits, rtol=RTOL, atol=ATOL)
    hub_names = to_hf_state_dict(model)
    assert "swin.encoder.layers.0.downsample.reduction.weight" in hub_names
    assert "swin.encoder.layers.0.blocks.1.attention.self.query.weight" in hub_names


def _save(ref, path):
    ref.save_pretrained(path)
    return path


def test_hugging_face_unsupported_options_raise():
    with pytest.raises(ValueError, match="use_absolute_embeddings"):
        config_from_hf({"model_type": "swin", "use_absolute_embeddings": True})
    with pytest.raises(ValueError, match="model_type"):
        config_from_hf({"model_type": "vit"})


def test_bare_hugging_face_swin_model_gives_pooled_features(tmp_path):
    from transformers import SwinModel

    kw, sizes = HF_CASES["2-stages-window7"]
    ref = _noisy(SwinModel(HFSwinConfig(**kw)))
    ref.save_pretrained(tmp_path)
    model = formers.from_pretrained(tmp_path)
    assert model.config.num_classes == 0
    images = torch.randn(2, 3, *sizes[1])
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, ref(images).pooler_output, rtol=RTOL, atol=ATOL)
