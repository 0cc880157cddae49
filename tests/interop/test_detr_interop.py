"""Parity of formers' DETR with Hugging Face ``DetrForObjectDetection`` through ``formers.interop.detr``.

Tiny random reference models (Hugging Face ResNet backbones with basic and bottleneck blocks, and a timm ResNet-18
backbone, the layout of the published ``facebook/detr-resnet-50``) are saved with ``save_pretrained``, loaded with
``formers.from_pretrained`` and compared in float32 (eval mode, 1e-5) with and without padded images; formers'
export loads back into ``transformers`` with the same outputs.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file

transformers = pytest.importorskip("transformers")
pytest.importorskip("torchvision")
from transformers import DetrConfig as HFDetrConfig  # noqa: E402
from transformers import DetrForObjectDetection, ResNetConfig  # noqa: E402

import formers  # noqa: E402
from formers.interop.detr import (  # noqa: E402
    config_from_hf_detr,
    convert_hf_detr_state_dict,
    save_detr_directory,
    to_hf_detr_state_dict,
)
from formers.models.detr import DETR, DETRConfig  # noqa: E402

ATOL = RTOL = 1e-5
TRANSFORMER = dict(d_model=32, encoder_layers=2, decoder_layers=3, encoder_ffn_dim=48, decoder_ffn_dim=48,
                   encoder_attention_heads=4, decoder_attention_heads=4, num_queries=9, num_labels=4)
CASES = {
    "hf-basic": dict(use_timm_backbone=False, backbone_config=ResNetConfig(
        layer_type="basic", depths=[1, 2, 1, 1], embedding_size=8, hidden_sizes=[8, 16, 32, 64],
        out_features=["stage4"])),
    "hf-bottleneck": dict(use_timm_backbone=False, backbone_config=ResNetConfig(
        layer_type="bottleneck", depths=[2, 1, 1, 1], embedding_size=8, hidden_sizes=[32, 64, 128, 256],
        out_features=["stage4"])),
    "timm-resnet18": dict(use_timm_backbone=True, backbone="resnet18"),
    "timm-resnet50-dc5": dict(use_timm_backbone=True, backbone="resnet50", dilation=True),  # detr-resnet-50-dc5
}


def _noisy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and BatchNorm statistics, so that every tensor takes part in the comparison."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=g)
            if t.ndim == 4:  # convolutions: unit gain, so that a 50-layer ResNet stays finite
                t.copy_(noise / t[0].numel() ** 0.5)
            elif name.endswith("running_var"):
                t.copy_(0.5 + noise.abs())
            elif "norm" in name and name.endswith("weight") or name.endswith(("bn1.weight", "bn2.weight", "bn3.weight")):
                t.copy_(1.0 + 0.2 * noise)
            else:
                t.copy_(0.2 * noise)
    return model.eval()


def _reference(case: str, tmp_path) -> tuple[DetrForObjectDetection, object]:
    if case.startswith("timm"):
        pytest.importorskip("timm")
    config = HFDetrConfig(**TRANSFORMER, **CASES[case])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _noisy(DetrForObjectDetection(config))
    ref.save_pretrained(tmp_path / "hf")
    return ref, tmp_path / "hf"


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(2, 3, 96, 80)
    mask = torch.ones(2, 96, 80, dtype=torch.bool)
    mask[1, 70:], mask[1, :, 45:] = False, False  # the second image is 70x45, padded
    images[1, :, 70:], images[1, :, :, 45:] = 0.0, 0.0
    return images, mask


@pytest.mark.parametrize("case", list(CASES))
def test_logits_and_boxes_match_hugging_face(case, tmp_path):
    ref, directory = _reference(case, tmp_path)
    ours = formers.from_pretrained(directory)
    assert isinstance(ours, DETR) and not ours.training and ours.config.num_classes == 4
    images, mask = _inputs()
    with torch.no_grad():
        for pixel_mask in (None, mask):
            theirs = ref(pixel_values=images, pixel_mask=None if pixel_mask is None else pixel_mask.long())
            out = ours(images, pixel_mask)
            torch.testing.assert_close(out.logits, theirs.logits, atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(out.boxes, theirs.pred_boxes, atol=ATOL, rtol=RTOL)


def test_dc5_loads_dilated_at_stride_16(tmp_path):
    _, directory = _reference("timm-resnet50-dc5", tmp_path)
    ours = formers.from_pretrained(directory)
    assert ours.config.backbone_dilation and ours.config.stride == 16
    assert ours.backbone(torch.zeros(1, 3, 96, 80)).shape[-2:] == (6, 5)  # not (3, 3) as at stride 32
    layer4 = ours.backbone.layer4
    assert [b.conv2.dilation for b in layer4] == [(1, 1), (2, 2), (2, 2)] and layer4[0].conv2.stride == (1, 1)
    assert formers.create_model("detr_resnet50_dc5").config.stride == 16


@pytest.mark.parametrize("case", ["hf-basic", "hf-bottleneck", "timm-resnet50-dc5"])
def test_export_loads_back_into_transformers(case, tmp_path):
    ref, directory = _reference(case, tmp_path)
    ours = formers.from_pretrained(directory)
    save_detr_directory(ours, tmp_path / "back")
    # The written tensors are exactly the original file's, under the same names.
    original, written = load_file(str(directory / "model.safetensors")), load_file(str(tmp_path / "back" / "model.safetensors"))
    assert set(written) == set(original)
    for key in original:
        torch.testing.assert_close(written[key], original[key], rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = DetrForObjectDetection.from_pretrained(tmp_path / "back").eval()
    images, mask = _inputs()
    with torch.no_grad():
        theirs = back(pixel_values=images, pixel_mask=mask.long())
        torch.testing.assert_close(ours(images, mask).boxes, theirs.pred_boxes, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(ours(images, mask).logits, theirs.logits, atol=ATOL, rtol=RTOL)


SMALL = dict(num_classes=3, backbone_block="basic", backbone_depths=[1, 1, 1, 1], backbone_width=8, embed_dim=16,
             num_encoder_layers=1, num_decoder_layers=2, num_heads=2, ffn_dim=32, num_queries=5)


def _exported(model: DETR, directory) -> DetrForObjectDetection:
    """``model`` saved by formers and loaded back by Hugging Face."""
    save_detr_directory(model, directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DetrForObjectDetection.from_pretrained(directory).eval()


def test_trainable_batchnorm_model_exports_its_running_statistics(tmp_path):
    model = _noisy(DETR(DETRConfig(**SMALL, backbone_norm="batch")))
    theirs = _exported(model, tmp_path / "out")
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images).boxes, theirs(pixel_values=images).pred_boxes, atol=ATOL, rtol=RTOL)
    reloaded = formers.from_pretrained(tmp_path / "out")  # back in formers: frozen BatchNorm, same outputs
    assert reloaded.config.backbone_norm == "frozen_batch"
    torch.testing.assert_close(reloaded(images).logits, model(images).logits, atol=ATOL, rtol=RTOL)


def test_live_state_dict_names_convert_too():
    config = HFDetrConfig(**TRANSFORMER, **CASES["hf-basic"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = DetrForObjectDetection(config)
    state = convert_hf_detr_state_dict(ref.state_dict(), timm_backbone=False)
    model = DETR(config_from_hf_detr(config.to_dict(), num_classes=4))
    assert set(state) == set(model.state_dict())
    assert set(to_hf_detr_state_dict(model)) == {
        k.replace("backbone.model.", "backbone.conv_encoder.model.").replace(".o_proj.", ".out_proj.")
        .replace("mlp.fc", "fc") for k in ref.state_dict()
    }


def test_unsupported_options_raise_clear_errors(tmp_path):
    base = json.loads(HFDetrConfig(**TRANSFORMER, **CASES["hf-basic"]).to_json_string())
    with pytest.raises(ValueError, match="position_embedding_type='learned'"):
        config_from_hf_detr({**base, "position_embedding_type": "learned"})
    timm18 = {**base, "backbone_config": None, "use_timm_backbone": True, "backbone": "resnet18"}
    with pytest.raises(ValueError, match="dilation \\(DC5\\) with the basic-block 'resnet18'"):
        config_from_hf_detr({**timm18, "dilation": True})
    with pytest.raises(ValueError, match="output_stride=8 is not supported"):
        config_from_hf_detr({**timm18, "backbone_config": {"model_type": "timm_backbone", "output_stride": 8}})
    with pytest.raises(ValueError, match="backbone_dilation \\(DC5\\) needs a bottleneck ResNet"):
        DETRConfig(backbone_block="basic", backbone_dilation=True)
    with pytest.raises(ValueError, match="encoder_attention_heads=4 differs from decoder_attention_heads=2"):
        config_from_hf_detr({**base, "decoder_attention_heads": 2})
    with pytest.raises(ValueError, match="hidden_sizes=.*doubling"):
        config_from_hf_detr({**base, "backbone_config": {**base["backbone_config"], "hidden_sizes": [8, 16, 32, 48]}})
    with pytest.raises(ValueError, match="downsample_in_first_stage"):
        config_from_hf_detr({**base, "backbone_config": {**base["backbone_config"], "downsample_in_first_stage": True}})
    with pytest.raises(ValueError, match="timm backbone 'efficientnet_b0'"):
        config_from_hf_detr({**base, "backbone_config": None, "use_timm_backbone": True, "backbone": "efficientnet_b0"})
    three = DETR(DETRConfig(num_classes=2, backbone_block="basic", backbone_depths=[1, 1, 1], backbone_width=8,
                            embed_dim=16, num_encoder_layers=1, num_decoder_layers=1, num_heads=2, ffn_dim=16))
    with pytest.raises(ValueError, match="backbone has 3 stages"):
        save_detr_directory(three, tmp_path / "three")
    with pytest.raises(TypeError, match="takes a formers DETR"):
        save_detr_directory(torch.nn.Linear(2, 2), tmp_path / "x")


def test_group_detr_exports_its_inference_group_only(tmp_path):
    model = _noisy(DETR(DETRConfig(**SMALL, query_groups=3))).eval()
    assert "extra_query_embed.weight" in model.state_dict()
    theirs = _exported(model, tmp_path / "out")
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, theirs(pixel_values=images).logits, atol=ATOL, rtol=RTOL)
