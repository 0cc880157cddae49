from __future__ import annotations

import pytest
import torch

import formers
from formers.interop.efficientformer import (
    config_from_timm_state,
    convert_timm_state_dict,
    load_timm_efficientformer,
    to_timm_efficientformer,
)
from formers.interop.timm import from_timm

timm = pytest.importorskip("timm")

# timm fixes the attention at 8 heads of key width 32 (values 128) on a 7x7 grid; the rest varies here.
SHAPES = {
    "l1_four_stages": ("efficientformer_l1", dict(depths=(1, 1, 1, 2), embed_dims=(8, 16, 24, 32), num_vit=1,
                                                  num_classes=5)),
    "l3_all_attention_gray": ("efficientformer_l3", dict(depths=(2, 1, 3), embed_dims=(8, 16, 24), num_vit=3,
                                                         num_classes=3, in_chans=1)),
    "l7_no_downsample_mlp2": ("efficientformer_l7", dict(depths=(1, 2), embed_dims=(16, 16),
                                                         downsamples=(False, False), num_vit=1, num_classes=4,
                                                         mlp_ratios=2)),
    "l1_pool5_no_head": ("efficientformer_l1", dict(depths=(1, 3), embed_dims=(8, 16), num_vit=2, num_classes=0,
                                                    pool_size=5)),
}


def _random_timm(name, kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs)
    with torch.no_grad():  # random BN statistics, layer scales and attention biases, so that each one matters
        for pname, p in model.named_parameters():
            p.copy_(torch.rand_like(p) * 0.5 + 0.5 if "gamma" in pname else p + 0.2 * torch.randn_like(p))
        for bname, b in model.named_buffers():
            if "running_mean" in bname:
                b.normal_()
            elif "running_var" in bname:
                b.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_timm_parity_and_round_trip(shape):
    name, kwargs = SHAPES[shape]
    ref = _random_timm(name, kwargs)
    overrides = {"pool_size": kwargs["pool_size"]} if "pool_size" in kwargs else None
    model = from_timm(name, ref.state_dict(), overrides)
    assert isinstance(model, formers.models.efficientformer.EfficientFormer) and not model.training
    c = model.config
    assert c.grid_size == 7 and c.num_heads == 8 and c.key_dim == 32 and c.value_dim == 128
    assert c.depths == kwargs["depths"] and c.embed_dims == kwargs["embed_dims"]
    images = torch.randn(2, kwargs.get("in_chans", 3), c.image_size, c.image_size)
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, ref(images), rtol=0, atol=1e-5)
        # a non-square input with the same 7x7 grid
        tall = images[:, :, : c.image_size - c.stride // 2]
        torch.testing.assert_close(model(tall).logits, ref(tall), rtol=0, atol=1e-5)
    back = to_timm_efficientformer(model)
    expected = ref.state_dict()
    assert back.keys() == expected.keys()
    for k in expected:
        assert torch.equal(back[k], expected[k]), k
    fresh = timm.create_model(name, pretrained=False, **kwargs).eval()
    fresh.load_state_dict(back, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(images), ref(images), rtol=0, atol=0)


def test_published_l1_converts():
    ref = _random_timm("efficientformer_l1", {})
    model = load_timm_efficientformer("efficientformer_l1", ref.state_dict())
    assert model.config == formers.registry.create_config("efficientformer_l1")
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, ref(images), rtol=0, atol=1e-5)


def test_qkv_rows_are_permuted_per_head():
    ref = _random_timm(*SHAPES["l1_four_stages"])
    state = ref.state_dict()
    config = config_from_timm_state("efficientformer_l1", state)
    ours = convert_timm_state_dict(state, config)
    theirs = state["stages.3.blocks.2.token_mixer.qkv.weight"]  # block 1 is Flat: the attention block is 2
    mine = ours["stages.3.attn_blocks.0.attn.qkv.weight"]
    # timm head 1's rows [q (32), k (32), v (128)] start at 192; formers' q rows of head 1 at 32, k at 288, v at 640
    torch.testing.assert_close(mine[32:64], theirs[192:224], rtol=0, atol=0)
    torch.testing.assert_close(mine[256 + 32 : 256 + 64], theirs[224:256], rtol=0, atol=0)
    torch.testing.assert_close(mine[512 + 128 : 512 + 256], theirs[256:384], rtol=0, atol=0)


def test_errors():
    state = _random_timm(*SHAPES["l1_four_stages"]).state_dict()
    with pytest.raises(ValueError, match="efficientformer"):
        load_timm_efficientformer("resnet50", state)
    with pytest.raises(ValueError, match="stem.conv1.weight"):
        load_timm_efficientformer("efficientformer_l1", {"head.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match=r"image_size=128 gives a 4x4 attention grid.*193\.\.224"):
        load_timm_efficientformer("efficientformer_l1", state, {"image_size": 128})
    with pytest.raises(TypeError, match="unknown config key"):
        load_timm_efficientformer("efficientformer_l1", state, {"num_vit": 2})
    bad = dict(state)
    bad["stages.3.blocks.2.token_mixer.attention_bias_idxs"] = torch.zeros(49, 49, dtype=torch.long)
    with pytest.raises(ValueError, match="attention-bias index"):
        load_timm_efficientformer("efficientformer_l1", bad)
    model = formers.create_model("efficientformer_tiny")
    with pytest.raises(ValueError, match="7x7"):
        to_timm_efficientformer(model)
