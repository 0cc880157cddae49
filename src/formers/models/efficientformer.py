"""EfficientFormer: a hybrid of pooling MetaBlocks on feature maps and attention MetaBlocks on tokens
(Li et al. 2022, "EfficientFormer: Vision Transformers at MobileNet Speed"; https://arxiv.org/abs/2206.01191).

Checked against timm 1.0.31's ``efficientformer_l1/l3/l7`` through ``formers.interop.efficientformer``: tiny
random timm models of several shapes give the same logits (fp32, eval mode, 1e-5), and converted weights go back
to timm unchanged.

Architecture (paper fig. 3): a conv stem (two 3x3 stride-2 conv + BN + ReLU, stride 4), then stages of 4-D
MetaBlocks on (B, C, H, W) maps, each ``x + LS(pool(x) - x)`` and ``x + LS(ConvFFN(x))`` with a BN conv FFN; a
3x3 stride-2 conv + BN downsamples between stages. In the last stage the final ``num_attn_blocks`` blocks are 3-D
MetaBlocks on tokens (the map is flattened, "Flat"): pre-norm attention with learned attention biases over token
offsets, and a linear FFN, both with layer scale. The head averages the tokens after a LayerNorm and applies two
linear classifiers, ``head`` and the distillation ``head_dist``, whose logits are averaged (as timm and the
paper's evaluation do).

Measured (one H200, bf16, batch 256, 224x224, same weights; benchmarks/efficientformer_speed.py): L1 trains at
2904 img/s (timm 2899) and infers at 11202 img/s (timm 11118). ``efficientformer_mini_28`` reaches 0.9247
Fashion-MNIST test accuracy from scratch in 164 s (tests/models/test_efficientformer.py, ``slow``/``gpu``).

Notable choices and differences:

- The attention-bias table covers the token grid of the last stage, fixed by ``image_size`` (224 -> 7x7 for the
  published models). An input is accepted when it gives the same grid (e.g. any side in 193..224 for 224) and is
  otherwise refused with an error naming the sizes that work; timm fixes the grid at 7x7 whatever ``img_size``.
- The attention is the shared ``formers.layers.SelfAttention`` (fused ``[q; k; v]`` rows, SDPA); timm lays its
  fused qkv out per head, and the converter permutes the rows.
- Training with a separate distillation target (timm's ``set_distilled_training``) is not offered: both heads
  always see the same loss through their average.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from formers.config import (
    MAX_LAYERS,
    Count,
    Epsilon,
    NumClasses,
    Pixels,
    Probability,
    Ratio,
    Width,
    check_fields,
)
from formers.layers import (
    DropPath,
    FeedForward,
    SelfAttention,
    check_images,
    drop_path_rates,
)
from formers.layers.attention_bias import AttentionBias
from formers.layers.conv_ffn import ConvFeedForward
from formers.layers.layer_scale import LayerScale, LayerScale2d
from formers.layers.pool_mixer import PoolMixer
from formers.layers.weight_init import trunc_normal_init_
from formers.models.outputs import ImageClassificationOutput
from formers.registry import register_family, register_model

STEM_STRIDE = 4


@dataclass
class EfficientFormerConfig:
    """Hyper-parameters of an EfficientFormer (defaults: EfficientFormer-L1 at 224x224, ImageNet-1k)."""

    image_size: Pixels = 224  # fixes the attention-bias grid: ceil(image_size / total stride) per side
    in_channels: Width = 3
    num_classes: NumClasses = 1000  # 0: the heads return the pooled features
    depths: tuple[Count, ...] = (3, 2, 6, 4)  # MetaBlocks per stage
    embed_dims: tuple[Width, ...] = (48, 96, 224, 448)  # channels per stage
    downsamples: tuple[bool, ...] = (False, True, True, True)  # stride-2 conv at the start of each stage
    num_attn_blocks: Count = 1  # the last stage's final blocks that are 3-D attention blocks (timm's num_vit)
    num_heads: Count = 8
    key_dim: Width = 32  # query/key width per head
    attn_ratio: Ratio = 4.0  # value width per head = attn_ratio * key_dim
    mlp_ratio: Ratio = 4.0
    pool_size: Pixels = 3
    layer_scale_init: float = 1e-5
    dropout: Probability = 0.0  # inside the FFNs (timm's proj_drop_rate)
    attn_dropout: Probability = 0.0
    head_dropout: Probability = 0.0  # on the pooled features before the classifiers (timm's drop_rate)
    drop_path_rate: Probability = 0.0
    layer_norm_eps: Epsilon = 1e-5

    def __post_init__(self) -> None:
        check_fields(self)
        n = len(self.depths)
        if n == 0 or len(self.embed_dims) != n or len(self.downsamples) != n:
            raise ValueError(
                f"depths, embed_dims and downsamples need one entry per stage, got {len(self.depths)}, "
                f"{len(self.embed_dims)} and {len(self.downsamples)}"
            )
        if sum(self.depths) > MAX_LAYERS:
            raise ValueError(f"depths must add up to at most {MAX_LAYERS} blocks, got {sum(self.depths)}")
        for i in range(1, n):
            if not self.downsamples[i] and self.embed_dims[i] != self.embed_dims[i - 1]:
                raise ValueError(
                    f"stage {i} has no downsampling conv, so embed_dims[{i}]={self.embed_dims[i]} must equal "
                    f"embed_dims[{i - 1}]={self.embed_dims[i - 1]}"
                )
        if not 1 <= self.num_attn_blocks <= self.depths[-1]:
            raise ValueError(
                f"num_attn_blocks must be in [1, depths[-1]={self.depths[-1]}], got {self.num_attn_blocks}"
            )
        if self.image_size < 1 or self.in_channels < 1 or self.num_classes < 0:
            raise ValueError(
                f"image_size and in_channels must be >= 1 and num_classes >= 0, got {self.image_size}, "
                f"{self.in_channels} and {self.num_classes}"
            )
        if self.num_heads < 1 or self.key_dim < 1 or self.value_dim < 1:
            raise ValueError(
                f"num_heads, key_dim and attn_ratio * key_dim must be >= 1, got {self.num_heads}, "
                f"{self.key_dim} and {self.attn_ratio} * {self.key_dim}"
            )
        if self.pool_size < 1 or self.pool_size % 2 == 0:
            raise ValueError(f"pool_size must be an odd positive int, got {self.pool_size}")

    @property
    def value_dim(self) -> int:
        """Value width per head (timm truncates ``attn_ratio * key_dim`` the same way)."""
        return int(self.attn_ratio * self.key_dim)

    @property
    def stride(self) -> int:
        """Total stride of the last stage's map relative to the input."""
        return STEM_STRIDE * 2 ** sum(bool(d) for d in self.downsamples)

    @property
    def grid_size(self) -> int:
        """Side of the last stage's token grid for ``image_size`` inputs (the attention-bias grid)."""
        return math.ceil(self.image_size / self.stride)


class ConvStem(nn.Module):
    """Two 3x3 stride-2 convolutions, each with BatchNorm and ReLU: (B, C_in, H, W) -> (B, D, H/4, W/4)."""

    def __init__(self, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, embed_dim // 2, 3, stride=2, padding=1)
        self.norm1 = nn.BatchNorm2d(embed_dim // 2)
        self.conv2 = nn.Conv2d(embed_dim // 2, embed_dim, 3, stride=2, padding=1)
        self.norm2 = nn.BatchNorm2d(embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x))))))


class Downsample(nn.Module):
    """3x3 stride-2 convolution + BatchNorm between stages: (B, C, H, W) -> (B, C', ceil(H/2), ceil(W/2))."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x))


class PoolBlock(nn.Module):
    """4-D MetaBlock on maps (B, C, H, W): pooling token mixer and BN conv FFN, each with layer scale."""

    def __init__(
        self, dim: int, pool_size: int, mlp_ratio: float, dropout: float, drop_path: float, layer_scale_init: float
    ) -> None:
        super().__init__()
        self.mixer = PoolMixer(pool_size)
        self.mixer_scale = LayerScale2d(dim, layer_scale_init)
        self.ffn = ConvFeedForward(dim, int(dim * mlp_ratio), dropout)
        self.ffn_scale = LayerScale2d(dim, layer_scale_init)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = x + self.drop_path(self.mixer_scale(self.mixer(x)))
        return x + self.drop_path(self.ffn_scale(self.ffn(x)))


class AttentionBlock(nn.Module):
    """3-D MetaBlock on tokens (B, N, D): pre-norm attention with learned offset biases, pre-norm FFN."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        key_dim: int,
        value_dim: int,
        grid_size: int,
        mlp_ratio: float,
        dropout: float,
        attn_dropout: float,
        drop_path: float,
        layer_scale_init: float,
        layer_norm_eps: float,
    ) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attn = SelfAttention(dim, num_heads, attn_dropout, head_dim=key_dim, value_head_dim=value_dim)
        self.attn_bias = AttentionBias(num_heads, (grid_size, grid_size))
        self.attn_scale = LayerScale(dim, layer_scale_init)
        self.ffn_norm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.ffn = FeedForward(dim, int(dim * mlp_ratio), activation="gelu", dropout=dropout)
        self.ffn_dropout = nn.Dropout(dropout)
        self.ffn_scale = LayerScale(dim, layer_scale_init)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, N, D), N = grid_size ** 2."""
        x = x + self.drop_path(self.attn_scale(self.attn(self.attn_norm(x), attn_bias=self.attn_bias())))
        return x + self.drop_path(self.ffn_scale(self.ffn_dropout(self.ffn(self.ffn_norm(x)))))


class EfficientFormerStage(nn.Module):
    """Optional downsampling, 4-D pooling blocks, then (last stage only) flattening and 3-D attention blocks."""

    def __init__(self, config: EfficientFormerConfig, index: int, drop_paths: list[float]) -> None:
        super().__init__()
        c = config
        dim = c.embed_dims[index]
        in_dim = c.embed_dims[index - 1] if index > 0 else c.embed_dims[0]
        self.downsample = Downsample(in_dim, dim) if c.downsamples[index] else None
        num_attn = c.num_attn_blocks if index == len(c.depths) - 1 else 0
        num_pool = c.depths[index] - num_attn
        self.blocks = nn.ModuleList(
            PoolBlock(dim, c.pool_size, c.mlp_ratio, c.dropout, drop_paths[i], c.layer_scale_init)
            for i in range(num_pool)
        )
        self.attn_blocks = nn.ModuleList(
            AttentionBlock(
                dim, c.num_heads, c.key_dim, c.value_dim, c.grid_size, c.mlp_ratio, c.dropout, c.attn_dropout,
                drop_paths[num_pool + i], c.layer_scale_init, c.layer_norm_eps,
            )
            for i in range(num_attn)
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C', H', W'), or tokens (B, H' * W', C') when the stage has attention blocks."""
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            x = block(x)
        if len(self.attn_blocks):
            x = x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C), row-major like the bias grid
            for block in self.attn_blocks:
                x = block(x)
        return x


@register_family
class EfficientFormer(nn.Module):
    """EfficientFormer image classifier; call as ``model(images)`` with images (B, C, H, W).

    Args:
        config: the architecture; ``config.image_size`` fixes the token grid of the attention biases.
    """

    family = "efficientformer"
    config_class = EfficientFormerConfig

    def __init__(self, config: EfficientFormerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.stem = ConvStem(c.in_channels, c.embed_dims[0])
        # rates are 0 without stochastic depth (skipping the helper lets the model be built on the meta device)
        rates = drop_path_rates(c.drop_path_rate, sum(c.depths)) if c.drop_path_rate > 0 else [0.0] * sum(c.depths)
        starts = [sum(c.depths[:i]) for i in range(len(c.depths))]
        self.stages = nn.ModuleList(
            EfficientFormerStage(c, i, rates[starts[i] : starts[i] + c.depths[i]]) for i in range(len(c.depths))
        )
        self.num_features = c.embed_dims[-1]
        self.norm = nn.LayerNorm(self.num_features, eps=c.layer_norm_eps)
        self.head_dropout = nn.Dropout(c.head_dropout)
        self.head, self.head_dist = self._heads(c.num_classes)
        trunc_normal_init_(self)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters kept out of weight decay: the attention-bias tables (as timm)."""
        return {name for name, _ in self.named_parameters() if name.endswith("attn_bias.table")}

    def _heads(self, num_classes: int) -> tuple[nn.Module, nn.Module]:
        if num_classes == 0:
            return nn.Identity(), nn.Identity()
        return nn.Linear(self.num_features, num_classes), nn.Linear(self.num_features, num_classes)

    def _check_size(self, height: int, width: int) -> None:
        c = self.config
        grid, stride = c.grid_size, c.stride
        got = (math.ceil(height / stride), math.ceil(width / stride))
        if got != (grid, grid):
            raise ValueError(
                f"images has size {height}x{width}, which gives a {got[0]}x{got[1]} token grid at the attention "
                f"blocks (total stride {stride}), but this model's attention biases cover a {grid}x{grid} grid "
                f"(image_size={c.image_size}): height and width must each be in "
                f"{(grid - 1) * stride + 1}..{grid * stride}; to take other sizes build the model with another "
                "image_size"
            )

    def forward_features(self, images: Tensor) -> Tensor:
        """Normalised tokens of the last stage, before pooling.

        Args:
            images: (B, C, H, W) pixels; H and W must give the attention-bias grid (see ``config.image_size``).

        Returns:
            (B, N, D) with N = grid_size ** 2 tokens (row-major) and D = embed_dims[-1].
        """
        images = check_images(images, "images", self.config.in_channels, self.norm.weight.dtype)
        self._check_size(images.shape[2], images.shape[3])
        x = self.stem(images)  # (B, D0, H/4, W/4)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Class scores from :meth:`forward_features`' tokens (B, N, D): mean pooling, then the average of the
        classifier and distillation heads; (B, num_classes), or the pooled (B, D) when ``num_classes`` is 0."""
        pooled = self.head_dropout(features.mean(dim=1))  # (B, D)
        return (self.head(pooled) + self.head_dist(pooled)) / 2

    def forward(self, images: Tensor) -> ImageClassificationOutput:
        """Class scores of images (B, C, H, W); ``logits`` (B, num_classes)."""
        return ImageClassificationOutput(logits=self.forward_head(self.forward_features(images)))

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces both heads with fresh ones for ``num_classes`` labels (0: the heads return pooled features)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        ref = self.norm.weight
        self.head, self.head_dist = self._heads(num_classes)
        trunc_normal_init_(self.head)
        trunc_normal_init_(self.head_dist)
        self.head.to(device=ref.device, dtype=ref.dtype).train(self.training)
        self.head_dist.to(device=ref.device, dtype=ref.dtype).train(self.training)
        self.config = dataclasses.replace(self.config, num_classes=num_classes)


@register_model(EfficientFormer)
def efficientformer_l1() -> EfficientFormerConfig:
    """EfficientFormer-L1 (12.3M): depths 3-2-6-4, widths 48-96-224-448, 1 attention block, 224x224."""
    return EfficientFormerConfig()


@register_model(EfficientFormer)
def efficientformer_l3() -> EfficientFormerConfig:
    """EfficientFormer-L3 (31.4M): depths 4-4-12-6, widths 64-128-320-512, 4 attention blocks, 224x224."""
    return EfficientFormerConfig(depths=(4, 4, 12, 6), embed_dims=(64, 128, 320, 512), num_attn_blocks=4)


@register_model(EfficientFormer)
def efficientformer_l7() -> EfficientFormerConfig:
    """EfficientFormer-L7 (82.2M): depths 6-6-18-8, widths 96-192-384-768, 8 attention blocks, 224x224."""
    return EfficientFormerConfig(depths=(6, 6, 18, 8), embed_dims=(96, 192, 384, 768), num_attn_blocks=8)


@register_model(EfficientFormer)
def efficientformer_tiny() -> EfficientFormerConfig:
    """CPU-test size: 3 stages (1-1-2 blocks, 8-16-24 wide), 2 heads of 8, a 4x4 attention grid at 64x64."""
    return EfficientFormerConfig(
        image_size=64, num_classes=10, depths=(1, 1, 2), embed_dims=(8, 16, 24), downsamples=(False, True, True),
        num_attn_blocks=1, num_heads=2, key_dim=8,
    )


@register_model(EfficientFormer)
def efficientformer_mini_28() -> EfficientFormerConfig:
    """28x28 grayscale, 10 classes (Fashion-MNIST): 2 stages (2-6 blocks, 96-192 wide), 3 attention blocks on 4x4."""
    return EfficientFormerConfig(
        image_size=28, in_channels=1, num_classes=10, depths=(2, 6), embed_dims=(96, 192), downsamples=(False, True),
        num_attn_blocks=3, num_heads=4, key_dim=16, drop_path_rate=0.05,
    )
