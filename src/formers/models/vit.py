"""ViT: the Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale"; https://arxiv.org/abs/2010.11929).

Checked against ``timm``'s ``VisionTransformer`` (timm 1.0) and Hugging Face ``transformers``'
``ViTForImageClassification`` through ``formers.interop.vit``: tiny random models of several shapes give the same
logits to 1e-5 in float32, at their own resolution and at new ones (position embeddings resampled).

Architecture (paper eq. 1-4): the image is cut into P x P patches, each linearly embedded
(:class:`~formers.layers.PatchEmbedding`); a learned class token is prepended and learned 1-D position
embeddings are added; N pre-norm encoder blocks (multi-head self-attention and a GELU MLP, each x + f(LN(x)));
a final LayerNorm; the class token's state goes through a linear head.

Notable choices and differences:

- Any image whose sides are multiples of the patch size is accepted: when its patch grid differs from the
  configured one, the position embeddings of the patch tokens are resampled by bicubic interpolation (paper
  sec. 3.2). ``pos_embed_antialias=True`` reproduces timm (``dynamic_img_size=True``), ``False`` Hugging Face
  (``interpolate_pos_encoding=True``); checkpoints converted from either set it accordingly.
- Stochastic depth (``drop_path_rate``, rising linearly over the blocks) as DeiT/timm train ViTs; the original
  paper used none. ``dropout`` acts after the position embeddings, inside the MLP, on each residual branch and
  before the head, as in timm.
- ``global_pool="avg"`` averages the patch tokens (after the final norm) instead of reading the class token,
  as timm's ``global_pool='avg', fc_norm=False``.
- LayerNorm eps defaults to timm's 1e-6; Hugging Face checkpoints carry their ``layer_norm_eps`` (1e-12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    FusedPreNormEncoderBlock,
    PatchEmbedding,
    check_image_size,
    check_images,
    drop_path_rates,
    resample_grid_positions,
)
from formers.layers.weight_init import trunc_normal_init_
from formers.models.outputs import ImageClassificationOutput
from formers.registry import register_family, register_model

GlobalPool = Literal["token", "avg"]


@dataclass
class ViTConfig:
    """Hyper-parameters of a Vision Transformer (defaults: ViT-B/16 at 224x224, 1000 classes)."""

    image_size: Pixels = 224  # square training resolution; the position embeddings cover its patch grid
    patch_size: Pixels = 16
    in_channels: Width = 3
    num_classes: NumClasses = 1000  # 0 = no head (the model returns pooled features)
    embed_dim: Width = 768
    num_layers: Count = 12
    num_heads: Count = 12
    mlp_ratio: Ratio = 4.0  # MLP hidden width = int(embed_dim * mlp_ratio), as timm
    dropout: Probability = 0.0
    attn_dropout: Probability = 0.0
    drop_path_rate: Probability = 0.0
    layer_norm_eps: Epsilon = 1e-6
    global_pool: GlobalPool = "token"
    pos_embed_antialias: bool = True  # timm's antialiased bicubic resampling (False: Hugging Face's plain bicubic)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if self.mlp_dim < 1:
            raise ValueError(f"mlp_ratio={self.mlp_ratio} gives an empty MLP for embed_dim={self.embed_dim}")
        if self.global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {self.global_pool!r}")

    @property
    def mlp_dim(self) -> int:
        """Hidden width of each block's MLP."""
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid (Gh, Gw) the position embeddings are laid out on."""
        side = self.image_size // self.patch_size
        return side, side


@register_family
class ViT(nn.Module):
    """Vision Transformer for image classification; call as ``model(images)``.

    Args:
        config: the :class:`ViTConfig`.
    """

    family = "vit"
    config_class = ViTConfig

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.patch_embed = PatchEmbedding(c.in_channels, c.embed_dim, c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        gh, gw = c.grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + gh * gw, c.embed_dim))  # class token's first
        self.pos_drop = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        self.blocks = nn.ModuleList(
            FusedPreNormEncoderBlock(  # x + DropPath(MSA(LN(x))), x + DropPath(MLP(LN(x))) (paper eq. 2-3)
                c.embed_dim, c.num_heads, c.mlp_dim, dropout=c.dropout, attn_dropout=c.attn_dropout,
                activation_dropout=c.dropout, activation="gelu", layer_norm_eps=c.layer_norm_eps, drop_path=rate,
            )
            for rate in drop_path_rates(c.drop_path_rate, c.num_layers)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.head_drop = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        self.head: nn.Module = self._new_head(c.num_classes)
        self._init_weights()

    def _new_head(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        head = nn.Linear(self.config.embed_dim, num_classes)
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head

    def _init_weights(self) -> None:
        """timm's ViT init: truncated-normal(0.02) linears and positions, near-zero class token."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        trunc_normal_init_(self.blocks)

    def no_weight_decay(self) -> set[str]:
        """Parameters kept out of weight decay (timm's convention): the class token and position embeddings."""
        return {"cls_token", "pos_embed"}

    def _check(self, images: Tensor) -> Tensor:
        """Checks ``images`` and returns them in the model's dtype."""
        c = self.config
        images = check_images(images, "images", c.in_channels, self.cls_token.dtype)
        what = f"ViT {c.patch_size}x{c.patch_size} patch grid"
        check_image_size(images.shape[-2], images.shape[-1], "images", c.patch_size, what)
        return images

    def position_embeddings(self, grid: tuple[int, int]) -> Tensor:
        """Position embeddings (1, 1 + Gh * Gw, D) of the class token and a (Gh, Gw) patch grid."""
        if grid == self.config.grid_size:
            return self.pos_embed
        patches = resample_grid_positions(
            self.pos_embed[:, 1:], self.config.grid_size, grid, antialias=self.config.pos_embed_antialias
        )  # (1, Gh*Gw, D)
        return torch.cat([self.pos_embed[:, :1], patches], dim=1)

    def forward_features(self, images: Tensor) -> Tensor:
        """Final normalised token states.

        Args:
            images: (B, C, H, W) normalised pixels; H and W multiples of ``patch_size``.

        Returns:
            (B, 1 + (H / P) * (W / P), D): the class token first, then the patches in row-major order.
        """
        images = self._check(images)
        x = self.patch_embed(images)  # (B, Gh, Gw, D)
        b, gh, gw, d = x.shape
        pos = self.position_embeddings((gh, gw))  # (1, 1 + Gh*Gw, D)
        # Adding the positions before the concatenation writes each token once (the sum is the same).
        patches = x.reshape(b, gh * gw, d) + pos[:, 1:]  # (B, Gh, Gw, D) -> (B, Gh*Gw, D)
        cls = (self.cls_token + pos[:, :1]).expand(b, -1, -1)  # (B, 1, D)
        x = self.pos_drop(torch.cat([cls, patches], dim=1))  # (B, 1 + Gh*Gw, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def pool(self, features: Tensor) -> Tensor:
        """Token states (B, T, D) -> one vector per image (B, D): the class token, or the patch mean."""
        if features.dim() != 3 or features.shape[-1] != self.config.embed_dim:
            raise ValueError(
                f"features must have shape (batch, tokens, {self.config.embed_dim}), got {tuple(features.shape)}"
            )
        if self.config.global_pool == "avg":
            return features[:, 1:].mean(dim=1)
        return features[:, 0]

    def forward_head(self, features: Tensor) -> Tensor:
        """Pooling + head: features (B, T, D) from :meth:`forward_features` -> logits (B, num_classes).

        With ``num_classes == 0`` the head is the identity and the pooled features (B, D) are returned.
        """
        return self.head(self.head_drop(self.pool(features)))

    def forward(self, images: Tensor) -> ImageClassificationOutput:
        """Class scores of a batch of images (B, C, H, W); ``logits`` (B, num_classes)."""
        return ImageClassificationOutput(logits=self.forward_head(self.forward_features(images)))

    def reset_classifier(self, num_classes: int, global_pool: GlobalPool | None = None) -> None:
        """Replaces the head with a freshly initialised one for ``num_classes`` classes (0 = identity head).

        Args:
            num_classes: new label count; ``config.num_classes`` is updated so checkpoints rebuild.
            global_pool: optionally switch the pooling (``"token"`` or ``"avg"``).
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        if global_pool is not None:
            if global_pool not in ("token", "avg"):
                raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
            self.config.global_pool = global_pool
        self.config.num_classes = num_classes
        ref = self.norm.weight
        self.head = self._new_head(num_classes).to(device=ref.device, dtype=ref.dtype)


def _variant(embed_dim: int, num_layers: int, num_heads: int) -> ViTConfig:
    # Published sizes (paper table 1; Ti/S from DeiT), 224x224, ImageNet-1k; stochastic depth as DeiT trains them.
    return ViTConfig(embed_dim=embed_dim, num_layers=num_layers, num_heads=num_heads, drop_path_rate=0.1)


@register_model(ViT)
def vit_tiny_patch16_224() -> ViTConfig:
    """ViT-Ti/16 (DeiT-Ti): 192 wide, 12 layers, 3 heads, 5.7M parameters, 224x224, 1000 classes."""
    return _variant(192, 12, 3)


@register_model(ViT)
def vit_small_patch16_224() -> ViTConfig:
    """ViT-S/16 (DeiT-S): 384 wide, 12 layers, 6 heads, 22M parameters, 224x224, 1000 classes."""
    return _variant(384, 12, 6)


@register_model(ViT)
def vit_base_patch16_224() -> ViTConfig:
    """ViT-B/16: 768 wide, 12 layers, 12 heads, 86M parameters, 224x224, 1000 classes."""
    return _variant(768, 12, 12)


@register_model(ViT)
def vit_large_patch16_224() -> ViTConfig:
    """ViT-L/16: 1024 wide, 24 layers, 16 heads, 304M parameters, 224x224, 1000 classes."""
    return _variant(1024, 24, 16)


@register_model(ViT)
def vit_micro_patch8_32() -> ViTConfig:
    """CPU-test ViT: 32x32 RGB, 8x8 patches (4x4 grid), 32 wide, 2 layers, 2 heads, 10 classes."""
    return ViTConfig(
        image_size=32, patch_size=8, num_classes=10, embed_dim=32, num_layers=2, num_heads=2, mlp_ratio=2.0
    )


@register_model(ViT)
def vit_mini_28() -> ViTConfig:
    """Fashion-MNIST ViT: 28x28 grayscale, 4x4 patches (7x7 grid), 256 wide, 6 layers, 8 heads, 10 classes."""
    return ViTConfig(
        image_size=28, patch_size=4, in_channels=1, num_classes=10, embed_dim=256, num_layers=6, num_heads=8,
        mlp_ratio=2.0,  # no stochastic depth: a 3-minute run underfits (recipe vit-fashion-mnist)
    )
