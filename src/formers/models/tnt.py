"""TNT: Transformer in Transformer (Han et al. 2021, "Transformer in Transformer", NeurIPS;
https://arxiv.org/abs/2103.00112).

Checked against ``timm`` 1.0.31's ``TNT`` (``tnt_s_patch16_224``, ``tnt_b_patch16_224``,
``tnt_s_legacy_patch16_224``) through ``formers.interop.tnt``: tiny random timm models of several shapes give the
same logits to 1e-5 in float32. Same parameter count as timm (TNT-S 23,768,584; TNT-B 65,428,680). On an H200
(bf16 autocast, batch 256, eager) TNT-S runs 1.36x timm's inference and 1.27x its training throughput
(measured with the former benchmarks/tnt_gpu.py; now benchmarks/tnt_speed.py).

Architecture: the image is cut into P x P patches ("visual sentences"); a 7x7 convolution of stride s inside each
patch gives ``n x n`` pixel tokens ("visual words", width c) plus a pixel position embedding shared by all
patches (:class:`formers.layers.PixelEmbedding`). The patch tokens start as the LayerNorm -> Linear -> LayerNorm
fold of their pixel tokens (:class:`formers.layers.PixelToPatch`), preceded by a class token, plus a learned
patch position embedding. Each TNT block runs

1. an inner pre-norm Transformer layer over the n*n pixel tokens of each patch (B*N short sequences),
2. adds the fold of the updated pixel tokens to the patch tokens (not to the class token),
3. an outer pre-norm Transformer layer over the 1 + N patch tokens,

with stochastic depth on all four residual branches (linear rule over the blocks). A final LayerNorm and a
linear head on the class token give the logits.

Notable choices and differences:

- Attention is the shared fused-QKV :class:`formers.layers.SelfAttention`; timm's separate ``qk`` and ``v``
  projections are concatenated into ``qkv`` by the converter. The outer attention takes the SDPA fast path; the
  inner one (many 16-token sequences, heads 6-10 wide) takes the explicit ``math`` path, measured faster there.
- The inner FFN width is ``inner_mlp_ratio * c`` (timm fixes it at 4c); the outer one ``mlp_ratio * D``.
- One ``dropout`` covers the position dropout, the residual-branch outputs, the FFN hidden layer and the head
  input (timm's ``pos_drop_rate``, ``proj_drop_rate`` and ``drop_rate``), all 0 in the published models.
- The model takes images of exactly ``image_size`` x ``image_size`` (the patch position table fixes the grid),
  as timm does.
- timm's ``tnt_s_legacy_patch16_224`` (the first release) convolves the whole image before cutting it into
  patches and folds pixels with a per-pixel LayerNorm and a biased projection: a different computation, so it is
  a second class, :class:`TNTLegacy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from formers.config import (
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
    PixelEmbedding,
    PixelToPatch,
    PixelwisePixelToPatch,
    SelfAttention,
    WholeImagePixelEmbedding,
    check_images,
    drop_path_rates,
)
from formers.layers.weight_init import trunc_normal_init_
from formers.models.outputs import ImageClassificationOutput
from formers.registry import register_family, register_model


@dataclass
class TNTConfig:
    """Hyper-parameters of a TNT image classifier (defaults: TNT-S, ImageNet-1k at 224x224)."""

    image_size: Pixels = 224
    patch_size: Pixels = 16
    in_channels: Width = 3
    num_classes: NumClasses = 1000
    embed_dim: Width = 384  # patch (outer) token width D
    inner_dim: Width = 24  # pixel (inner) token width c
    num_layers: Count = 12
    num_heads: Count = 6  # outer attention heads
    inner_num_heads: Count = 4
    mlp_ratio: Ratio = 4.0  # outer FFN width / D
    inner_mlp_ratio: Ratio = 4.0  # inner FFN width / c
    pixel_stride: Pixels = 4  # stride of the 7x7 pixel convolution: ceil(P / stride)^2 pixel tokens per patch
    qkv_bias: bool = False
    dropout: Probability = 0.0
    attn_dropout: Probability = 0.0
    drop_path_rate: Probability = 0.0
    layer_norm_eps: Epsilon = 1e-5

    def __post_init__(self) -> None:
        check_fields(self)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.inner_dim % self.inner_num_heads:
            raise ValueError(
                f"inner_dim ({self.inner_dim}) must be divisible by inner_num_heads ({self.inner_num_heads})"
            )

    @property
    def num_patches(self) -> int:
        """Patch tokens N (without the class token)."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_pixels(self) -> int:
        """Pixel tokens per patch, ceil(P / stride)^2."""
        return math.ceil(self.patch_size / self.pixel_stride) ** 2


def _attention(embed_dim: int, num_heads: int, attn_dropout: float, qkv_bias: bool) -> SelfAttention:
    """Fused-QKV self-attention whose q/k/v projection has a bias iff ``qkv_bias``; the output projection
    always has one (TNT's layout)."""
    attn = SelfAttention(embed_dim, num_heads, dropout=attn_dropout, bias=qkv_bias)
    if not qkv_bias:
        attn.out_proj = nn.Linear(embed_dim, embed_dim)
    return attn


class TNTBlock(nn.Module):
    """One TNT block: inner layer on pixel tokens, fold into the patch tokens, outer layer on patch tokens.

    Args:
        inner_dim: pixel-token width c.
        num_pixels: pixel tokens per patch, n * n.
        embed_dim: patch-token width D.
        inner_num_heads: heads of the inner attention.
        num_heads: heads of the outer attention.
        inner_mlp_ratio: inner FFN width / c.
        mlp_ratio: outer FFN width / D.
        qkv_bias: whether the q/k/v projections have biases.
        dropout: dropout on residual-branch outputs and FFN hidden activations.
        attn_dropout: dropout on attention weights.
        drop_path: stochastic-depth rate of this block's four residual branches.
        layer_norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        inner_dim: int,
        num_pixels: int,
        embed_dim: int,
        inner_num_heads: int,
        num_heads: int,
        inner_mlp_ratio: float = 4.0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.inner_attn_norm = nn.LayerNorm(inner_dim, eps=layer_norm_eps)
        self.inner_attn = _attention(inner_dim, inner_num_heads, attn_dropout, qkv_bias)
        # B*N sequences of n*n (16) tokens with narrow heads (6 wide in TNT-S): the explicit path beats the fused
        # kernels there (H200, bf16, TNT-S inner shape: 1.0 ms fwd+bwd against 7.6 ms for the default SDPA kernel).
        self.inner_attn.backend = "math"
        self.inner_mlp_norm = nn.LayerNorm(inner_dim, eps=layer_norm_eps)
        self.inner_mlp = FeedForward(inner_dim, int(inner_dim * inner_mlp_ratio), "gelu", dropout=dropout)
        self.pixel_to_patch = self._fold(inner_dim, num_pixels, embed_dim, layer_norm_eps)
        self.attn_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.attn = _attention(embed_dim, num_heads, attn_dropout, qkv_bias)
        self.mlp_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.mlp = FeedForward(embed_dim, int(embed_dim * mlp_ratio), "gelu", dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    @staticmethod
    def _fold(inner_dim: int, num_pixels: int, embed_dim: int, layer_norm_eps: float) -> nn.Module:
        return PixelToPatch(num_pixels * inner_dim, embed_dim, bias=False, layer_norm_eps=layer_norm_eps)

    def forward(self, pixels: Tensor, patches: Tensor) -> tuple[Tensor, Tensor]:
        """Updates pixel tokens (B * N, n * n, c) and patch tokens (B, 1 + N, D) (class token first)."""
        pixels = pixels + self.drop_path(self.dropout(self.inner_attn(self.inner_attn_norm(pixels))))
        pixels = pixels + self.drop_path(self.dropout(self.inner_mlp(self.inner_mlp_norm(pixels))))
        fold = self.pixel_to_patch(pixels, patches.shape[1] - 1)  # (B, N, D)
        patches = torch.cat([patches[:, :1], patches[:, 1:] + fold], dim=1)  # (B, 1 + N, D)
        patches = patches + self.drop_path(self.dropout(self.attn(self.attn_norm(patches))))
        patches = patches + self.drop_path(self.dropout(self.mlp(self.mlp_norm(patches))))
        return pixels, patches


@register_family
class TNT(nn.Module):
    """TNT image classifier: ``model(images)`` with images (B, C, H, W) returns ``.logits`` (B, num_classes)."""

    family = "tnt"
    config_class = TNTConfig
    block_cls: type[TNTBlock] = TNTBlock
    pixel_embedding_cls: type[PixelEmbedding] = PixelEmbedding

    def __init__(self, config: TNTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.pixel_embed = self.pixel_embedding_cls(c.in_channels, c.inner_dim, c.patch_size, c.pixel_stride)
        self.patch_embed = PixelToPatch(c.num_pixels * c.inner_dim, c.embed_dim, bias=True,
                                        layer_norm_eps=c.layer_norm_eps)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.patch_pos = nn.Parameter(torch.zeros(1, c.num_patches + 1, c.embed_dim))
        self.pos_drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            self.block_cls(
                c.inner_dim, c.num_pixels, c.embed_dim, c.inner_num_heads, c.num_heads,
                inner_mlp_ratio=c.inner_mlp_ratio, mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias, dropout=c.dropout,
                attn_dropout=c.attn_dropout, drop_path=rate, layer_norm_eps=c.layer_norm_eps,
            )
            for rate in drop_path_rates(c.drop_path_rate, c.num_layers)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.head_drop = nn.Dropout(c.dropout)
        self.head: nn.Module = nn.Linear(c.embed_dim, c.num_classes) if c.num_classes > 0 else nn.Identity()
        for p in (self.cls_token, self.patch_pos, self.pixel_embed.pixel_pos):
            nn.init.trunc_normal_(p, std=0.02, a=-2.0, b=2.0)
        trunc_normal_init_(self)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters kept out of weight decay (the class token and position embeddings)."""
        return {"cls_token", "patch_pos", "pixel_pos"}

    def _check(self, images: Tensor) -> Tensor:
        """Checks ``images`` and returns them in the model's dtype."""
        c = self.config
        images = check_images(images, "images", c.in_channels, self.cls_token.dtype)
        h, w = images.shape[-2:]
        if h != c.image_size or w != c.image_size:
            raise ValueError(
                f"images has size {h}x{w}, which the TNT patch grid cannot take: the model takes exactly "
                f"{c.image_size}x{c.image_size} images (image_size={c.image_size}, a {c.image_size // c.patch_size}"
                f"x{c.image_size // c.patch_size} grid of {c.patch_size}x{c.patch_size} patches); resize the "
                "images or build the model with another image_size"
            )
        return images

    def forward_features(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) -> final normalised tokens (B, 1 + N, D), class token first."""
        images = self._check(images)
        b = images.shape[0]
        pixels = self.pixel_embed(images)  # (B*N, n*n, c)
        patches = self.patch_embed(pixels, self.config.num_patches)  # (B, N, D)
        patches = torch.cat([self.cls_token.expand(b, -1, -1), patches], dim=1) + self.patch_pos  # (B, 1+N, D)
        patches = self.pos_drop(patches)
        for block in self.blocks:
            pixels, patches = block(pixels, patches)
        return self.norm(patches)

    def forward_head(self, features: Tensor) -> Tensor:
        """Features (B, 1 + N, D) -> logits (B, num_classes) from the class token (or it, (B, D), with no head)."""
        return self.head(self.head_drop(features[:, 0]))

    def forward(self, images: Tensor) -> ImageClassificationOutput:
        """Class scores ``logits`` (B, num_classes) of images (B, C, image_size, image_size)."""
        return ImageClassificationOutput(logits=self.forward_head(self.forward_features(images)))

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces the head by a fresh one with ``num_classes`` outputs (0: identity, returning pooled features)."""
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        old = self.head.weight if isinstance(self.head, nn.Linear) else self.norm.weight
        if num_classes > 0:
            head = nn.Linear(self.config.embed_dim, num_classes, device=old.device, dtype=old.dtype)
            trunc_normal_init_(head)
            self.head = head
        else:
            self.head = nn.Identity()
        self.config.num_classes = num_classes


class TNTLegacyBlock(TNTBlock):
    """TNT block of the first release: the fold normalises each pixel token and its projection has a bias."""

    @staticmethod
    def _fold(inner_dim: int, num_pixels: int, embed_dim: int, layer_norm_eps: float) -> nn.Module:
        return PixelwisePixelToPatch(inner_dim, num_pixels, embed_dim, layer_norm_eps=layer_norm_eps)


@register_family
class TNTLegacy(TNT):
    """TNT as first released (timm's ``tnt_s_legacy_patch16_224``): the pixel convolution runs over the whole
    image before it is cut into patches (:class:`formers.layers.WholeImagePixelEmbedding`), and the blocks fold
    with :class:`formers.layers.PixelwisePixelToPatch`. Same config and interface as :class:`TNT`;
    ``patch_size`` must be a multiple of ``pixel_stride``.
    """

    family = "tnt_legacy"
    config_class = TNTConfig
    block_cls = TNTLegacyBlock
    pixel_embedding_cls = WholeImagePixelEmbedding


@register_model(TNT)
def tnt_s_patch16_224() -> TNTConfig:
    """TNT-S (23.8M): 12 blocks, D=384 (6 heads), c=24 (4 heads), 16x16 patches of 4x4 pixel tokens, 224x224."""
    return TNTConfig(drop_path_rate=0.1)


@register_model(TNT)
def tnt_b_patch16_224() -> TNTConfig:
    """TNT-B (65.4M): 12 blocks, D=640 (10 heads), c=40 (4 heads), 16x16 patches of 4x4 pixel tokens, 224x224."""
    return TNTConfig(embed_dim=640, inner_dim=40, num_heads=10, drop_path_rate=0.1)


@register_model(TNTLegacy)
def tnt_s_legacy_patch16_224() -> TNTConfig:
    """TNT-S as first released (23.8M): whole-image pixel convolution, per-pixel fold LayerNorm; timm's legacy."""
    return TNTConfig(drop_path_rate=0.1)


@register_model(TNT)
def tnt_tiny() -> TNTConfig:
    """Tiny TNT for CPU tests: 2 blocks, D=32 (2 heads), c=8 (2 heads), 32x32 images of 8x8 patches."""
    return TNTConfig(image_size=32, patch_size=8, num_classes=10, embed_dim=32, inner_dim=8, num_layers=2,
                     num_heads=2, inner_num_heads=2, pixel_stride=4)


@register_model(TNT)
def tnt_mini_28() -> TNTConfig:
    """TNT for 28x28 grayscale Fashion-MNIST: 6 blocks, D=192 (3 heads), c=16 (2 heads), 7x7 patches of 4x4 pixels.

    3.0M parameters. No stochastic depth: in H200 runs of a few minutes (bf16, batch 512, AdamW 2e-3, wd 0.05,
    label smoothing 0.1) it only slowed learning (20 epochs: 0.885 test accuracy without, 0.862 with 0.1).
    """
    return TNTConfig(image_size=28, patch_size=4, in_channels=1, num_classes=10, embed_dim=192, inner_dim=16,
                     num_layers=6, num_heads=3, inner_num_heads=2, pixel_stride=1)
