"""DETR: object detection as set prediction (Carion et al. 2020, "End-to-End Object Detection with Transformers";
https://arxiv.org/abs/2005.12872).

Checked against Hugging Face ``transformers``' ``DetrForObjectDetection`` (ResNet backbone, ``use_timm_backbone=
False``) through ``formers.interop.detr``: tiny random models give the same logits and boxes to 1e-5 in float32,
with and without padded images (measured difference 0.0). Defaults are those of facebookresearch/detr (ResNet-50, 6 + 6 post-norm layers,
256 wide, 8 heads, FFN 2048, dropout 0.1, 100 queries).

Architecture: a ResNet (torchvision's ``BasicBlock`` / ``Bottleneck``, frozen BatchNorm) turns the image into a
stride-32 feature map (4 stages); a 1x1 convolution projects it to ``embed_dim``; 2-D sine positions normalised to each image's
real extent (:func:`~formers.layers.positional.sine_position_grid`) are added to the queries and keys of every
attention layer; the encoder's post-norm blocks attend over the feature cells (padding cells masked out); the
decoder turns ``num_queries`` learned query positions (the object queries, starting from zero states) into one
prediction each, attending to each other without a causal mask and to the encoder's cells; a shared LayerNorm
follows every decoder layer; a linear class head scores ``num_classes + 1`` labels (the last is "no object") and a
3-layer MLP with a sigmoid predicts (cx, cy, w, h) normalised to the image's real (unpadded) size. Every decoder
layer's predictions are returned for the auxiliary losses (paper sec. 3.2).

Notable choices and differences:

- The backbone's widths and depths are configurable (``backbone_width``, ``backbone_depths``; fewer than 4 stages
  end at stride 16 or 8, for small images) so that a CPU-sized model exists; the registered ResNet-50/18 sizes are
  exactly torchvision's ``resnet50`` / ``resnet18`` (same parameter names and shapes), built with no downloaded
  weights.
- The first decoder layer's self-attention value projection gets no gradient: the object queries' states start at
  zero (as in every DETR), so its values are its bias alone.
- ``backbone_norm="frozen_batch"`` (the paper, for an ImageNet-initialised backbone) fixes the BatchNorm statistics
  and affine parameters; training from scratch wants ``"batch"`` (trainable BatchNorm, as "Rethinking ImageNet
  Pre-training", He et al. 2019, recommends), since frozen identity statistics leave the ResNet unnormalised.
- Hugging Face applies the decoder's final LayerNorm to the states fed to the next layer when ``auxiliary_loss=
  True`` (and twice to the last); facebookresearch/detr and formers normalise a copy, so their outputs do not
  depend on whether auxiliary losses are used. Parity holds with Hugging Face's default ``auxiliary_loss=False``.
- Hugging Face applies dropout to the encoder's input; facebookresearch/detr and formers do not.
- ``query_groups`` > 1 trains Group DETR (Chen et al. 2023, "Group DETR: Fast DETR Training with Group-Wise
  One-to-Many Assignment"): the training forward pass decodes ``query_groups`` groups of ``num_queries`` queries
  (the first group is ``query_embed``, the others ``extra_query_embed``), each group attending only to itself, and
  the criterion matches every group one-to-one to the boxes; evaluation and inference decode the first group alone,
  so the model then computes exactly what a one-group DETR with its weights does (and exports as one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.config import Between, Count, Epsilon, Probability, Width, check_fields
from formers.layers import (
    DecoderBlock,
    EncoderBlock,
    check_images,
    padding_to_attn_mask,
)
from formers.layers.positional import sine_position_grid
from formers.layers.validation import should_check_values
from formers.models.outputs import DetectionOutput
from formers.registry import register_family, register_model

BackboneBlock = Literal["basic", "bottleneck"]
BackboneNorm = Literal["frozen_batch", "batch"]
ClassScores = Literal["softmax", "sigmoid"]
FOCAL_PRIOR = 0.01  # the probability a sigmoid class head starts at (RetinaNet, Deformable DETR)


@dataclass
class DETRConfig:
    """Hyper-parameters of DETR (defaults: DETR-R50 of the paper, 91 COCO label ids)."""

    num_classes: Annotated[int, Between(1, 2**22)] = 91  # labels 0..num_classes-1; label num_classes is "no object"
    in_channels: Width = 3
    backbone_block: BackboneBlock = "bottleneck"
    backbone_depths: list[Count] = field(default_factory=lambda: [3, 4, 6, 3])  # blocks per stage (ResNet-50)
    backbone_width: Width = 64  # stem width; stage i has width * 2**i (times 4 out of a bottleneck)
    backbone_norm: BackboneNorm = "frozen_batch"
    backbone_dilation: bool = False  # DC5: the last stage keeps its resolution, its 3x3 convolutions dilated by 2
    embed_dim: Width = 256
    num_encoder_layers: Count = 6
    num_decoder_layers: Count = 6
    num_heads: Count = 8
    ffn_dim: Width = 2048
    dropout: Probability = 0.1  # on every residual branch
    attn_dropout: Probability = 0.0
    activation_dropout: Probability = 0.1  # inside the FFN (facebookresearch/detr applies `dropout` there too)
    activation: str = "relu"
    layer_norm_eps: Epsilon = 1e-5
    num_queries: Count = 100
    pos_temperature: Annotated[float, Between(1.0, 1e9)] = 10000.0
    # "softmax": the paper's scores over num_classes + 1 labels; "sigmoid": an independent probability per class,
    # trained with the focal loss (Deformable DETR, Zhu et al. 2021), the no-object logit unused
    class_scores: ClassScores = "softmax"
    # Group DETR: groups of num_queries queries decoded in training (each matched one-to-one); inference uses one
    query_groups: Count = 1

    def __post_init__(self) -> None:
        check_fields(self)  # types, finiteness and ranges of every field, from the annotations
        if self.class_scores not in ("softmax", "sigmoid"):
            raise ValueError(f"class_scores must be 'softmax' or 'sigmoid', got {self.class_scores!r}")
        if not 1 <= len(self.backbone_depths) <= 4 or min(self.backbone_depths) < 1:
            raise ValueError(f"backbone_depths must be 1 to 4 stage depths >= 1, got {list(self.backbone_depths)}")
        if self.backbone_block not in ("basic", "bottleneck"):
            raise ValueError(f"backbone_block must be 'basic' or 'bottleneck', got {self.backbone_block!r}")
        if self.backbone_dilation and (self.backbone_block != "bottleneck" or len(self.backbone_depths) < 2):
            raise ValueError(
                "backbone_dilation (DC5) needs a bottleneck ResNet of 2 or more stages (torchvision's BasicBlock has "
                f"no dilation), got backbone_block={self.backbone_block!r}, {len(self.backbone_depths)} stage(s)")
        if self.backbone_norm not in ("frozen_batch", "batch"):
            raise ValueError(f"backbone_norm must be 'frozen_batch' or 'batch', got {self.backbone_norm!r}")
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.embed_dim % 4 != 0:
            raise ValueError(f"embed_dim must be a multiple of 4 (2-D sine positions), got {self.embed_dim}")

    @property
    def num_labels(self) -> int:
        """Labels the class head scores: ``num_classes`` and "no object"."""
        return self.num_classes + 1

    @property
    def stride(self) -> int:
        """Pixels per feature cell (the ResNet's total stride: 32 with 4 stages, 16 with 3 or with DC5 ...)."""
        return 2 ** (1 + len(self.backbone_depths) - int(self.backbone_dilation))


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its pooling and classifier: (B, C, H, W) -> (B, C_out, ceil(H/S), ceil(W/S)),
    S = 32 with 4 stages (16 with 3, ...).

    Built from torchvision's own ``BasicBlock`` / ``Bottleneck``, with torchvision's parameter names (``conv1``,
    ``bn1``, ``layer1``..``layer4``) and init (Kaiming-normal convolutions); with ``width=64`` its state dict is that
    of ``torchvision.models.resnet18/34/50`` without ``fc``.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101).
        depths: blocks in each stage (4 stages: ResNet; fewer end the network earlier).
        width: stem width; stage i is ``width * 2**i`` wide (times 4 at a bottleneck's output).
        norm: ``"frozen_batch"`` (torchvision's ``FrozenBatchNorm2d``) or ``"batch"`` (trainable ``BatchNorm2d``).
        in_channels: image channels.
        dilate_last: DC5 (torchvision's ``replace_stride_with_dilation`` for the last stage, timm's
            ``output_stride=16``): the last stage does not downsample, and its blocks after the first dilate their 3x3
            convolutions by 2. Bottleneck blocks only.
    """

    def __init__(
        self, block: BackboneBlock, depths: list[int], width: int, norm: BackboneNorm, in_channels: int = 3,
        dilate_last: bool = False,
    ) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1
        from torchvision.ops import FrozenBatchNorm2d

        norm_layer = FrozenBatchNorm2d if norm == "frozen_batch" else nn.BatchNorm2d
        block_cls = BasicBlock if block == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = width
        for i, depth in enumerate(depths):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            dilation = 2 if dilate_last and i == len(depths) - 1 else 1
            stride //= dilation
            out = planes * block_cls.expansion
            downsample = None
            if stride != 1 or inplanes != out:
                downsample = nn.Sequential(conv1x1(inplanes, out, stride), norm_layer(out))
            blocks = [block_cls(inplanes, planes, stride, downsample, norm_layer=norm_layer)]
            more = {"dilation": dilation} if dilation > 1 else {}  # the first block keeps the previous dilation
            blocks += [block_cls(out, planes, norm_layer=norm_layer, **more) for _ in range(depth - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = out
        self.out_channels = inplanes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        self.num_stages = len(depths)

    def forward(self, images: Tensor, fold: bool | None = None) -> Tensor:
        """(B, C, H, W) -> (B, C_out, H', W') with H' = ceil(H / stride).

        torchvision's blocks as they define them. With ``fold`` (by default: in reduced precision, under autocast or
        with bf16/fp16 inputs), a frozen BatchNorm is folded into the convolution before it (its scale into the
        weights, its shift into a bias): the same function without a pass over every activation map (under bf16
        autocast, torchvision's FrozenBatchNorm2d also turns each map into float32). In float32 the convolution and
        the BatchNorm run one after the other, as in torchvision, so that the results equal torchvision's to the last
        bits rather than to a rounding."""
        if fold is None:
            fold = torch.is_autocast_enabled(images.device.type) or images.dtype in (torch.float16, torch.bfloat16)
        x = self.maxpool(F.relu(_conv_bn(self.conv1, self.bn1, images, fold), inplace=True))
        for i in range(1, self.num_stages + 1):
            for block in getattr(self, f"layer{i}"):
                x = _block(block, x, fold)
        return x


def _conv_bn(conv: nn.Conv2d, norm: nn.Module, x: Tensor, fold: bool) -> Tensor:
    """``norm(conv(x))``; with ``fold``, a FrozenBatchNorm2d is folded into the convolution's weights and bias."""
    from torchvision.ops import FrozenBatchNorm2d

    if not (fold and isinstance(norm, FrozenBatchNorm2d)):
        return norm(conv(x))
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()  # (C_out,)
    shift = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    weight = conv.weight * scale[:, None, None, None]
    return F.conv2d(x, weight, shift, conv.stride, conv.padding, conv.dilation, conv.groups)


def _block(block: nn.Module, x: Tensor, fold: bool) -> Tensor:
    """torchvision's ``BasicBlock`` / ``Bottleneck`` forward through :func:`_conv_bn`."""
    identity = x if block.downsample is None else _conv_bn(block.downsample[0], block.downsample[1], x, fold)
    out = F.relu(_conv_bn(block.conv1, block.bn1, x, fold), inplace=True)
    if hasattr(block, "conv3"):  # Bottleneck
        out = F.relu(_conv_bn(block.conv2, block.bn2, out, fold), inplace=True)
        out = _conv_bn(block.conv3, block.bn3, out, fold)
    else:
        out = _conv_bn(block.conv2, block.bn2, out, fold)
    return F.relu(out + identity, inplace=True)


class BoxHead(nn.Module):
    """The box MLP: ``num_layers`` linears with ReLU between them, then a sigmoid: (..., D) -> (..., 4) in [0, 1]."""

    def __init__(self, embed_dim: int, num_layers: int = 3) -> None:
        super().__init__()
        widths = [embed_dim] * num_layers + [4]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., 4) normalised (cx, cy, w, h)."""
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x.sigmoid()


@register_family
class DETR(nn.Module):
    """DETR for object detection; call as ``model(images, padding_mask=None)``.

    Args:
        config: the :class:`DETRConfig`.
    """

    family = "detr"
    config_class = DETRConfig

    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        self.config = c = config
        self.backbone = ResNetBackbone(c.backbone_block, list(c.backbone_depths), c.backbone_width, c.backbone_norm,
                                       c.in_channels, dilate_last=c.backbone_dilation)
        self.input_proj = nn.Conv2d(self.backbone.out_channels, c.embed_dim, kernel_size=1)
        block_args = (c.embed_dim, c.num_heads, c.ffn_dim, c.dropout, c.attn_dropout, c.activation_dropout,
                      c.activation, c.layer_norm_eps)
        self.encoder = nn.ModuleList(EncoderBlock(*block_args) for _ in range(c.num_encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(*block_args) for _ in range(c.num_decoder_layers))
        self.decoder_norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.query_embed = nn.Embedding(c.num_queries, c.embed_dim)
        if c.query_groups > 1:  # Group DETR's other groups, decoded in training only
            self.extra_query_embed = nn.Embedding((c.query_groups - 1) * c.num_queries, c.embed_dim)
        self.class_head = nn.Linear(c.embed_dim, c.num_classes + 1)
        if c.class_scores == "sigmoid":  # every class starts rare: the focal loss's prior
            nn.init.constant_(self.class_head.bias, -math.log((1 - FOCAL_PRIOR) / FOCAL_PRIOR))
        self.box_head = BoxHead(c.embed_dim)
        self._init_transformer()

    def _init_transformer(self) -> None:
        """facebookresearch/detr: Xavier-uniform matrices in the encoder and decoder (zero attention biases)."""
        for module in [*self.encoder.modules(), *self.decoder.modules()]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def freeze_backbone(self, stages: int = 1) -> None:
        """Stops training the backbone's stem and its first ``stages`` stages (``requires_grad=False``), as
        facebookresearch/detr and Hugging Face do for an ImageNet-initialised ResNet (``stages=1``); 4 freezes it all.
        """
        if not 0 <= stages <= 4:
            raise ValueError(f"stages must be in [0, 4], got {stages}")
        frozen = ["conv1", "bn1", *[f"layer{i}" for i in range(1, stages + 1)]]
        for name, param in self.backbone.named_parameters():
            if name.split(".")[0] in frozen:
                param.requires_grad_(False)

    def _check(self, images: Tensor, padding_mask: Tensor | None) -> Tensor:
        """Checks the inputs and returns ``images`` in the model's dtype."""
        images = check_images(images, "images", self.config.in_channels, self.input_proj.weight.dtype)
        if padding_mask is None:
            return images
        if not isinstance(padding_mask, Tensor) or padding_mask.dtype != torch.bool:
            got = padding_mask.dtype if isinstance(padding_mask, Tensor) else type(padding_mask).__name__
            raise TypeError(f"padding_mask must be a boolean tensor (True = real pixel), got {got}")
        b, _, h, w = images.shape
        if tuple(padding_mask.shape) != (b, h, w):
            raise ValueError(
                f"padding_mask must have shape (batch, height, width) = {(b, h, w)} to match images "
                f"{tuple(images.shape)}, got {tuple(padding_mask.shape)}"
            )
        if should_check_values(padding_mask) and not bool(padding_mask[:, 0, 0].all()):
            bad = int((~padding_mask[:, 0, 0]).nonzero()[0, 0])
            raise ValueError(
                f"padding_mask marks the top-left pixel of image {bad} as padding; each image's real pixels must "
                "start at the top-left corner (pad at the bottom and right)"
            )
        return images

    def feature_mask(self, padding_mask: Tensor, size: tuple[int, int]) -> Tensor:
        """Pixel mask (B, H, W) -> feature-cell mask (B, h, w), by nearest-neighbour sampling as DETR does."""
        return F.interpolate(padding_mask[None].float(), size=size)[0].bool()  # (1, B, H, W) -> (B, h, w)

    def forward(self, images: Tensor, padding_mask: Tensor | None = None) -> DetectionOutput:
        """Detects objects in a batch of images.

        Args:
            images: (B, C, H, W) normalised pixels; images of different sizes are padded at the bottom/right.
            padding_mask: (B, H, W) bool, True = real pixel; ``None``: every pixel is real.

        Returns:
            :class:`DetectionOutput` with ``logits`` (B, Q, num_classes + 1), ``boxes`` (B, Q, 4) normalised
            (cx, cy, w, h) relative to each image's real size, and ``aux_outputs``, the same for every decoder layer
            but the last.
        """
        images = self._check(images, padding_mask)
        c = self.config
        features = self.input_proj(self.backbone(images))  # (B, D, h, w)
        b, d, h, w = features.shape
        if padding_mask is None:
            cells = torch.ones(b, h, w, dtype=torch.bool, device=images.device)
            attn_mask = None  # no mask: the fused attention kernels that take none apply
        else:
            cells = self.feature_mask(padding_mask, (h, w))  # (B, h, w)
            attn_mask = padding_to_attn_mask(cells.flatten(1))  # (B, h, w) -> (B, 1, 1, h*w)
        pos = sine_position_grid(cells, d, c.pos_temperature).to(features.dtype).flatten(1, 2)  # (B, h, w, D) -> (B, h*w, D)
        memory = features.flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, h*w, D)
        for layer in self.encoder:
            memory = layer(memory, attn_mask=attn_mask, pos=pos)
        groups = c.query_groups if self.training else 1
        queries, group_mask = self.query_embed.weight, None  # (Q, D)
        if groups > 1:
            queries = torch.cat([queries, self.extra_query_embed.weight])  # (G * Q, D), group after group
            group = torch.arange(groups, device=queries.device).repeat_interleave(c.num_queries)  # (G * Q,)
            group_mask = (group[:, None] == group[None, :])[None, None]  # (1, 1, G * Q, G * Q): within a group
        query_pos = queries.unsqueeze(0).expand(b, -1, -1)  # (B, G * Q, D)
        x = torch.zeros_like(query_pos)
        states = []
        for layer in self.decoder:
            x = layer(x, memory, group_mask, memory_mask=attn_mask, query_pos=query_pos, memory_pos=pos,
                      is_causal=False)
            states.append(self.decoder_norm(x))
        hidden = torch.stack(states)  # (L, B, G * Q, D)
        logits, boxes = self.class_head(hidden), self.box_head(hidden)  # (L, B, G * Q, K + 1), (L, B, G * Q, 4)
        aux = [DetectionOutput(logits=logits[i], boxes=boxes[i], query_groups=groups) for i in range(len(states) - 1)]
        return DetectionOutput(logits=logits[-1], boxes=boxes[-1], aux_outputs=aux, query_groups=groups)


@register_model(DETR)
def detr_resnet50() -> DETRConfig:
    """DETR-R50 (the paper): torchvision ResNet-50, 6 + 6 layers, 256 wide, 8 heads, 100 queries, 91 COCO ids."""
    return DETRConfig()


@register_model(DETR)
def detr_resnet50_dc5() -> DETRConfig:
    """DETR-DC5-R50 (the paper's variant for small objects): the last ResNet stage dilated, stride 16, 100 queries."""
    return DETRConfig(backbone_dilation=True)


@register_model(DETR)
def detr_resnet18() -> DETRConfig:
    """DETR with torchvision's ResNet-18 (small runs): 6 + 6 layers, 256 wide, 8 heads, 100 queries."""
    return DETRConfig(backbone_block="basic", backbone_depths=[2, 2, 2, 2])


@register_model(DETR)
def detr_tiny() -> DETRConfig:
    """CPU-size DETR: 3-stage ResNet of width 16 (stride 16, trainable BatchNorm), 1 + 3 layers 64 wide, 10 queries."""
    return DETRConfig(
        num_classes=10, backbone_block="basic", backbone_depths=[1, 1, 1], backbone_width=16, backbone_norm="batch",
        embed_dim=64, num_encoder_layers=1, num_decoder_layers=3, num_heads=4, ffn_dim=128, num_queries=10,
    )


__all__ = ["DETR", "BoxHead", "DETRConfig", "ResNetBackbone"]


def class_probabilities(logits: Tensor, class_scores: str = "softmax") -> Tensor:
    """(..., K + 1) logits -> (..., K) probabilities of the real classes: the softmax over all K + 1 labels without
    the no-object one (the paper's), or each class's sigmoid (``class_scores="sigmoid"``, focal-loss models)."""
    logits = logits.float()
    if class_scores == "sigmoid":
        return logits[..., :-1].sigmoid()
    return logits.softmax(-1)[..., :-1]
