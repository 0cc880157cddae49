from __future__ import annotations

import pytest
import torch

import formers
from formers.layers import MultiHeadAttention
from formers.models.detr import DETR, DETRConfig, ResNetBackbone
from formers.registry import create_config

torchvision = pytest.importorskip("torchvision")

TINY = dict(
    num_classes=5, backbone_block="basic", backbone_depths=[1, 1, 1, 1], backbone_width=8, embed_dim=16,
    num_encoder_layers=2, num_decoder_layers=3, num_heads=2, ffn_dim=32, num_queries=7,
)


def _noisy(model: DETR) -> DETR:
    """Larger weights than the init so that queries differ visibly; frozen BatchNorm keeps its identity statistics."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("backbone"):
                p.add_(0.2 * torch.randn_like(p))
    return model


def test_published_variants_have_the_reference_sizes():
    with torch.device("meta"):
        counts = {n: sum(p.numel() for p in formers.create_model(n).parameters()) for n in formers.list_models("detr_*")}
    # detr_resnet50: the parameter count of Hugging Face's DetrForObjectDetection (ResNet-50, 91 labels) and the
    # paper's 41M; detr_resnet18 swaps in ResNet-18 (11.2M of torchvision's 11.7M, less its classifier).
    assert counts["detr_resnet50"] == 41_524_768
    assert counts["detr_resnet18"] == 28_843_552
    assert counts["detr_tiny"] < 1_000_000
    c = create_config("detr_resnet50")
    assert (c.embed_dim, c.num_encoder_layers, c.num_decoder_layers, c.num_heads, c.ffn_dim, c.num_queries) == (
        256, 6, 6, 8, 2048, 100)


@pytest.mark.parametrize("name,block,depths", [("resnet18", "basic", [2, 2, 2, 2]),
                                                ("resnet50", "bottleneck", [3, 4, 6, 3])])
def test_backbone_is_torchvisions_resnet(name, block, depths):
    from torchvision.ops import FrozenBatchNorm2d

    reference = getattr(torchvision.models, name)(weights=None, norm_layer=FrozenBatchNorm2d).eval()
    with torch.no_grad():  # non-identity statistics, so that BatchNorm takes part in the comparison
        for m in reference.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.normal_(0, 0.1)
    ours = ResNetBackbone(block, depths, 64, "frozen_batch").eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert set(state) == set(ours.state_dict())
    ours.load_state_dict(state)
    x = torch.randn(1, 3, 64, 96)
    body = torch.nn.Sequential(*list(reference.children())[:-2])  # without avgpool and fc
    with torch.no_grad():
        torch.testing.assert_close(ours(x), body(x), rtol=1e-5, atol=1e-5)
    assert ours(x).shape == (1, ours.out_channels, 2, 3)


def test_padded_images_give_the_outputs_they_give_alone():
    # A CNN's features near an image's edge see the padding (as in every DETR), so the backbone is swapped for a
    # cell-local one (kernel = stride = 32): what is checked is that the masks and the positions make the
    # transformer ignore padding cells.
    model = _noisy(DETR(DETRConfig(**TINY))).eval()
    model.backbone = torch.nn.Conv2d(3, model.input_proj.in_channels, kernel_size=32, stride=32)
    small, large = torch.randn(3, 64, 32), torch.randn(3, 96, 128)
    batch = torch.zeros(2, 3, 96, 128)
    batch[0, :, :64, :32], batch[1] = small, large
    mask = torch.zeros(2, 96, 128, dtype=torch.bool)
    mask[0, :64, :32], mask[1] = True, True
    with torch.no_grad():
        padded = model(batch, mask)
        for i, image in enumerate([small, large]):
            alone = model(image[None])
            torch.testing.assert_close(padded.logits[i], alone.logits[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(padded.boxes[i], alone.boxes[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(padded.aux_outputs[0].boxes[i], alone.aux_outputs[0].boxes[0], atol=1e-5,
                                       rtol=1e-5)
    # An all-True mask is the same as no mask.
    torch.testing.assert_close(model(batch, torch.ones_like(mask)).boxes, model(batch).boxes)


def test_decoder_queries_see_each_other_and_sdpa_equals_math():
    model = _noisy(DETR(DETRConfig(**TINY))).eval()
    x = torch.randn(2, 3, 64, 64)
    mask = torch.ones(2, 64, 64, dtype=torch.bool)
    mask[1, 40:], mask[1, :, 50:] = False, False
    fast = model(x, mask)
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            m.backend = "math"
    torch.testing.assert_close(model(x, mask).logits, fast.logits, atol=1e-5, rtol=1e-5)
    # Not causal: changing the last query's embedding changes the first query's prediction.
    with torch.no_grad():
        model.query_embed.weight[-1].add_(1.0)
    assert not torch.allclose(model(x, mask).logits[:, 0], fast.logits[:, 0])


def test_bad_inputs_raise_clear_errors():
    model = DETR(DETRConfig(**TINY)).eval()
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(TypeError, match="floating tensor"):
        model(x.to(torch.uint8))
    with pytest.raises(ValueError, match="1 channels, the model expects in_channels=3"):
        model(x[:, :1])
    with pytest.raises(ValueError, match=r"shape \(batch, channels, height, width\)"):
        model(x[0])
    with pytest.raises(ValueError, match="NaN"):
        model(x.clone().index_fill_(2, torch.tensor([3]), float("nan")))
    with pytest.raises(ValueError, match="infinite"):
        model(x.clone().index_fill_(2, torch.tensor([3]), float("inf")))
    with pytest.raises(ValueError, match=r"padding_mask must have shape .* \(2, 64, 64\) .* got \(2, 64, 32\)"):
        model(x, torch.ones(2, 64, 32, dtype=torch.bool))
    with pytest.raises(TypeError, match="padding_mask must be a boolean tensor"):
        model(x, torch.ones(2, 64, 64))
    mask = torch.ones(2, 64, 64, dtype=torch.bool)
    mask[1, :10] = False
    with pytest.raises(ValueError, match="top-left pixel of image 1"):
        model(x, mask)
    with pytest.raises(ValueError, match="backbone_depths"):
        DETRConfig(backbone_depths=[2, 2, 2, 2, 2])
    with pytest.raises(ValueError, match="divisible by num_heads"):
        DETRConfig(embed_dim=20, num_heads=3)


def test_fewer_backbone_stages_end_at_a_finer_stride():
    config = DETRConfig(**{**TINY, "backbone_depths": [1, 1, 1]})
    model = DETR(config).eval()
    assert config.stride == 16 and model.backbone.out_channels == 32
    assert model.backbone(torch.randn(1, 3, 64, 96)).shape == (1, 32, 4, 6)
    assert model(torch.randn(1, 3, 64, 96)).boxes.shape == (1, 7, 4)


def test_freeze_backbone_stops_the_stem_and_first_stages():
    model = DETR(DETRConfig(**TINY, backbone_norm="batch"))
    model.freeze_backbone(2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("backbone.conv1", "backbone.bn1", "backbone.layer1", "backbone.layer2"))
                   for n in trainable)
    assert "backbone.layer3.0.conv1.weight" in trainable and "class_head.weight" in trainable
    with pytest.raises(ValueError, match="stages must be in"):
        model.freeze_backbone(5)


def test_group_detr_decodes_groups_apart_in_training_and_one_group_in_eval():
    config = dict(TINY, dropout=0.0, activation_dropout=0.0)
    torch.manual_seed(0)
    grouped = _noisy(DETR(DETRConfig(**config, query_groups=3)))
    single = DETR(DETRConfig(**config))
    state = grouped.state_dict()
    extra = state.pop("extra_query_embed.weight")  # (2 * 7, 16): groups 2 and 3
    assert extra.shape == (14, 16)
    single.load_state_dict(state)
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = grouped.eval()(images)
        assert out.query_groups == 1 and out.logits.shape == (2, 7, 6)  # inference decodes the first group only
        torch.testing.assert_close(out.logits, single.eval()(images).logits, rtol=0, atol=0)
        grouped.train(), single.train()  # batch statistics: the same batch gives the same features
        out = grouped(images)
        assert out.query_groups == 3 and out.logits.shape == (2, 21, 6) and out.aux_outputs[0].boxes.shape == (2, 21, 4)
        for g, queries in enumerate([state["query_embed.weight"], extra[:7], extra[7:]]):
            single.query_embed.weight.copy_(queries)
            alone = single(images)  # group g decoded by itself: the groups do not see each other
            part = slice(7 * g, 7 * (g + 1))
            torch.testing.assert_close(out.logits[:, part], alone.logits, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out.aux_outputs[1].boxes[:, part], alone.aux_outputs[1].boxes, rtol=1e-5,
                                       atol=1e-5)


@pytest.mark.parametrize("block,depths", [("basic", [1, 1]), ("bottleneck", [1, 2])])
def test_folded_frozen_batchnorm_is_the_same_function(block, depths):
    """Under autocast the backbone folds each frozen BatchNorm into its convolution; in float64 the folded blocks
    equal torchvision's conv -> BatchNorm to rounding (outputs and gradients), and a bf16-autocast forward stays
    within bf16's error."""
    torch.manual_seed(0)
    net = ResNetBackbone(block, depths, 16, "frozen_batch").double().eval()
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "running_var"):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.normal_(0, 0.1)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    x = torch.randn(2, 3, 48, 64, dtype=torch.float64)

    with torch.no_grad():
        folded, plain = net(x, fold=True), net(x, fold=False)
        torch.testing.assert_close(folded, plain, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(plain, net(x), rtol=0, atol=0)  # float64, no autocast: the unfolded path
        net.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = net(x.float())
            torch.testing.assert_close(fast, net(x.float(), fold=True), rtol=0, atol=0)  # autocast folds by default
        torch.testing.assert_close(fast.float(), plain.float(), rtol=0.05, atol=0.05)
    net.double()
    grads = []
    for fold in (True, False):  # the same gradients for the convolutions' weights and the input
        net.zero_grad()
        xg = x.clone().requires_grad_()
        net(xg, fold=fold).square().sum().backward()
        grads.append([xg.grad, *(p.grad for p in net.parameters() if p.grad is not None)])
    assert len(grads[0]) == len(grads[1]) > 1
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)

