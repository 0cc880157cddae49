"""Swin Transformer: a hierarchical vision Transformer with shifted windows (Liu et al. 2021, "Swin Transformer:
Hierarchical Vision Transformer using Shifted Windows"; https://arxiv.org/abs/2103.14030).

Checked against ``timm`` 1.0 (``swin_*``) and Hugging Face ``transformers``' ``SwinForImageClassification``
through ``formers.interop.swin``: same logits to 1e-5 in float32 for tiny random models of several shapes,
including non-square inputs padded to whole patches and windows.

Architecture: a P x P patch embedding + LayerNorm, then stages of pre-norm blocks that alternate window attention
(W-MSA) and shifted-window attention (SW-MSA: cyclic shift by half a window + a mask keeping formerly distant tokens
apart), each with a learned relative position bias; patch merging (2x2 -> 2C) opens every stage after the first;
stochastic depth rises linearly over all blocks; a final LayerNorm, global average pooling and a linear head.

Notable choices and differences:

- Features stay channels-last (B, H, W, C) between blocks, as in ``timm``; ``forward_features`` returns that map.
- Any image size is accepted, as in Hugging Face: images are zero-padded to whole patches, every block's
  (normalised) map to whole windows (before the cyclic shift) and odd maps to even before patch merging; padded
  tokens are not masked. ``timm`` rolls before it pads, so on maps that are not whole windows the two references
  differ; formers follows Hugging Face there and equals both whenever maps are whole windows (224x224, window 7).
- Windows larger than a stage's map follow the reference rule (microsoft/Swin-Transformer, Hugging Face): when
  ``min(stage resolution at image_size) <= window_size`` the stage's window shrinks to that size and is not
  shifted. ``timm`` applies the rule per axis, which differs only for non-square ``image_size``. A runtime map whose
  smaller side is <= the window is not shifted either (Hugging Face's rule).
- The attention mask of shifted windows is folded into the relative position bias (-inf, where the references
  add -100) and everything runs through ``formers.layers.SelfAttention`` (``F.scaled_dot_product_attention``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.config import (
    MAX_LAYERS,
    MAX_WIDTH,
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
from formers.layers.patch_embed import PatchEmbedding
from formers.layers.patch_merging import PatchMerging
from formers.layers.relative_position import WindowRelativePositionBias
from formers.layers.weight_init import trunc_normal_init_
from formers.layers.windows import (
    cyclic_shift,
    pad_to_windows,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from formers.models.outputs import ImageClassificationOutput
from formers.registry import register_family, register_model


@dataclass
class SwinConfig:
    """Hyper-parameters of a Swin Transformer classifier (defaults: Swin-T, ImageNet-1k, 224x224)."""

    image_size: Pixels = 224  # the size the windows are fitted to (see the module docstring); others are padded
    patch_size: Pixels = 4
    in_channels: Width = 3
    num_classes: NumClasses = 1000  # 0 = no head: logits are the pooled features
    embed_dim: Width = 96  # width of stage 1; doubles at every stage
    depths: tuple[Count, ...] = (2, 2, 6, 2)
    num_heads: tuple[Count, ...] = (3, 6, 12, 24)
    window_size: Pixels = 7
    mlp_ratio: Ratio = 4.0
    dropout: Probability = 0.0  # after the embedding, the attention output and inside/after the MLP
    attn_dropout: Probability = 0.0
    drop_path_rate: Probability = 0.2
    layer_norm_eps: Epsilon = 1e-5  # blocks and final norm; patch embedding/merging norms use 1e-5 (as the references)

    def __post_init__(self) -> None:
        check_fields(self)
        self.depths, self.num_heads = tuple(self.depths), tuple(self.num_heads)
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"depths and num_heads need one positive entry per stage, got depths={self.depths}, "
                f"num_heads={self.num_heads}"
            )
        if sum(self.depths) > MAX_LAYERS:
            raise ValueError(f"depths must add up to at most {MAX_LAYERS} blocks, got {sum(self.depths)}")
        if self.embed_dim * 2 ** (len(self.depths) - 1) > MAX_WIDTH:
            raise ValueError(
                f"the last stage's width embed_dim * 2**{len(self.depths) - 1} must be at most {MAX_WIDTH}, got "
                f"embed_dim={self.embed_dim} with {len(self.depths)} stages"
            )
        for i, heads in enumerate(self.num_heads):
            width = self.embed_dim * 2**i
            if width % heads:
                raise ValueError(f"stage {i} width {width} (embed_dim * 2**{i}) must divide by num_heads[{i}]={heads}")

    def stage_resolutions(self) -> list[int]:
        """Side of each stage's map at ``image_size`` (patch grid, then halved, rounding up)."""
        side = math.ceil(self.image_size / self.patch_size)
        sides = [side]
        for _ in self.depths[1:]:
            sides.append(math.ceil(sides[-1] / 2))
        return sides

    def stage_windows(self) -> list[tuple[int, int]]:
        """(window side, shift) per stage: the reference rule shrinks the window to small maps and drops the shift."""
        out = []
        for side in self.stage_resolutions():
            if side <= self.window_size:
                out.append((side, 0))
            else:
                out.append((self.window_size, self.window_size // 2))
        return out


def _attention_dtype(x: Tensor) -> torch.dtype:
    """dtype of the attention scores: the autocast dtype when autocast is on, else that of ``x``."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class SwinBlock(nn.Module):
    """Pre-norm block: (shifted-)window attention with relative position bias, then an MLP; (B, H, W, C) maps.

    Args:
        embed_dim: width C.
        num_heads: H.
        window_size: window side w.
        mlp_ratio: MLP hidden width / C.
        dropout: dropout on the attention output and in/after the MLP.
        attn_dropout: dropout on attention weights.
        drop_path: stochastic depth rate of both residual branches.
        layer_norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.window_size = (window_size, window_size)
        self.norm1 = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.attn = SelfAttention(embed_dim, num_heads, dropout=attn_dropout)
        self.rel_pos = WindowRelativePositionBias(num_heads, self.window_size)
        self.attn_out_dropout = nn.Dropout(dropout)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.mlp = FeedForward(embed_dim, int(embed_dim * mlp_ratio), activation="gelu", dropout=dropout)
        self.mlp_out_dropout = nn.Dropout(dropout)
        self.drop_path2 = DropPath(drop_path)

    def forward(
        self, x: Tensor, shift_size: tuple[int, int] | None = None, window_mask: Tensor | None = None
    ) -> Tensor:
        """One block.

        Args:
            x: (B, H, W, C) map.
            shift_size: (sh, sw) cyclic shift of SW-MSA; ``None`` for W-MSA.
            window_mask: boolean (nW, N, N) mask of the shifted windows of the padded map (True = may attend).

        Returns:
            (B, H, W, C).
        """
        b, h, w, c = x.shape
        y = pad_to_windows(self.norm1(x), self.window_size)  # (B, Hp, Wp, C)
        hp, wp = y.shape[1], y.shape[2]
        if shift_size is not None:
            y = cyclic_shift(y, shift_size)
        windows = window_partition(y, self.window_size)  # (B * nW, N, C)
        bias = self.rel_pos(_attention_dtype(windows), window_mask, b)  # (1 or B * nW, H, N, N)
        windows = self.attn_out_dropout(self.attn(windows, attn_bias=bias))  # (B * nW, N, C)
        y = window_reverse(windows, self.window_size, hp, wp)  # (B, Hp, Wp, C)
        if shift_size is not None:
            y = cyclic_shift(y, shift_size, reverse=True)
        if hp != h or wp != w:
            y = y[:, :h, :w]  # (B, H, W, C)
        x = x + self.drop_path1(y)
        return x + self.drop_path2(self.mlp_out_dropout(self.mlp(self.norm2(x))))


class SwinStage(nn.Module):
    """Patch merging (all stages but the first) and ``depth`` blocks alternating W-MSA and SW-MSA.

    Args:
        in_dim: width of the incoming map.
        embed_dim: width C of the stage (2 * in_dim after merging).
        depth: number of blocks.
        num_heads: H.
        window_size: window side of the stage (already fitted to its resolution).
        shift_size: shift of the odd blocks (0: never shifted).
        resolution: side of the stage's map at the config's ``image_size`` (its shift mask is precomputed).
        drop_paths: stochastic depth rate of each block.
        downsample: whether the stage opens with patch merging.
        mlp_ratio, dropout, attn_dropout, layer_norm_eps: as in :class:`SwinBlock` (merging keeps eps 1e-5).
    """

    def __init__(
        self,
        in_dim: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        resolution: int,
        drop_paths: list[float],
        downsample: bool,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.downsample = PatchMerging(in_dim, embed_dim) if downsample else nn.Identity()
        self.blocks = nn.ModuleList(
            SwinBlock(embed_dim, num_heads, window_size, mlp_ratio, dropout, attn_dropout, rate, layer_norm_eps)
            for rate in drop_paths
        )
        padded = -(-resolution // window_size) * window_size
        self.mask_size = (padded, padded)
        mask = self._mask(padded, padded, None) if shift_size and depth > 1 else torch.zeros(0, dtype=torch.bool)
        self.register_buffer("window_mask", mask, persistent=False)  # (nW, N, N) at the config's resolution

    def _mask(self, hp: int, wp: int, device: torch.device | None) -> Tensor:
        s = (self.shift_size, self.shift_size)
        return shifted_window_mask(hp, wp, (self.window_size, self.window_size), s, device=device)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C_in) -> (B, H', W', C), H' = ceil(H / 2) after merging."""
        x = self.downsample(x)
        h, w = x.shape[1], x.shape[2]
        ws = self.window_size
        shifted = self.shift_size > 0 and min(h, w) > ws  # Hugging Face's runtime rule
        mask = None
        if shifted and len(self.blocks) > 1:
            hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
            mask = self.window_mask if (hp, wp) == self.mask_size else self._mask(hp, wp, x.device)
        shift = (self.shift_size, self.shift_size)
        for i, block in enumerate(self.blocks):
            x = block(x, shift, mask) if shifted and i % 2 == 1 else block(x)
        return x


@register_family
class SwinTransformer(nn.Module):
    """Swin Transformer image classifier; call as ``model(images)`` with images (B, C, H, W) of any size."""

    family = "swin"
    config_class = SwinConfig

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.config = c = config
        self.patch_embed = PatchEmbedding(c.in_channels, c.embed_dim, c.patch_size)
        self.embed_norm = nn.LayerNorm(c.embed_dim)
        self.embed_dropout = nn.Dropout(c.dropout)
        rates = drop_path_rates(c.drop_path_rate, sum(c.depths))
        stages = []
        for i, ((ws, shift), side) in enumerate(zip(c.stage_windows(), c.stage_resolutions(), strict=True)):
            start = sum(c.depths[:i])
            stages.append(
                SwinStage(
                    c.embed_dim * 2 ** max(i - 1, 0), c.embed_dim * 2**i, c.depths[i], c.num_heads[i], ws, shift, side,
                    rates[start : start + c.depths[i]], downsample=i > 0, mlp_ratio=c.mlp_ratio, dropout=c.dropout,
                    attn_dropout=c.attn_dropout, layer_norm_eps=c.layer_norm_eps,
                )
            )
        self.stages = nn.ModuleList(stages)
        self.num_features = c.embed_dim * 2 ** (len(c.depths) - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=c.layer_norm_eps)
        self.head: nn.Module = nn.Linear(self.num_features, c.num_classes) if c.num_classes else nn.Identity()
        trunc_normal_init_(self)

    def forward_features(self, images: Tensor) -> Tensor:
        """Final normalised feature map before pooling.

        Args:
            images: (B, C, H, W), any H and W (zero-padded to whole patches).

        Returns:
            (B, H', W', D) with H' = ceil(H / P) halved (rounding up) at every stage after the first,
            D = embed_dim * 2 ** (stages - 1).
        """
        images = check_images(images, "images", self.config.in_channels, self.norm.weight.dtype)
        p = self.config.patch_size
        h, w = images.shape[-2:]
        if h % p or w % p:
            images = F.pad(images, (0, -w % p, 0, -h % p))  # (B, C, ceil(H/P)*P, ceil(W/P)*P)
        x = self.embed_dropout(self.embed_norm(self.patch_embed(images)))  # (B, Gh, Gw, D)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Average-pools ``features`` (B, H', W', D) and applies the head: logits (B, num_classes) (or (B, D))."""
        return self.head(features.mean(dim=(1, 2)))

    def forward(self, images: Tensor) -> ImageClassificationOutput:
        """Class scores ``logits`` (B, num_classes) for images (B, C, H, W)."""
        return ImageClassificationOutput(logits=self.forward_head(self.forward_features(images)))

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces the head by a fresh one for ``num_classes`` classes (0: identity, logits = pooled features)."""
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        ref = self.norm.weight
        head = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype) if num_classes else None
        self.head = nn.Identity() if head is None else head
        trunc_normal_init_(self.head)
        self.config.num_classes = num_classes


@register_model(SwinTransformer)
def swin_tiny_patch4_window7_224() -> SwinConfig:
    """Swin-T (28M): embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7, 224x224, stochastic depth 0.2."""
    return SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2)


@register_model(SwinTransformer)
def swin_small_patch4_window7_224() -> SwinConfig:
    """Swin-S (50M): embed 96, depths 2-2-18-2, heads 3-6-12-24, window 7, 224x224, stochastic depth 0.3."""
    return SwinConfig(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3)


@register_model(SwinTransformer)
def swin_base_patch4_window7_224() -> SwinConfig:
    """Swin-B (88M): embed 128, depths 2-2-18-2, heads 4-8-16-32, window 7, 224x224, stochastic depth 0.5."""
    return SwinConfig(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5)


@register_model(SwinTransformer)
def swin_tiny_cpu() -> SwinConfig:
    """Tiny CPU test model: 32x32 RGB, patch 2, embed 16, depths 2-2, heads 2-4, window 4, 10 classes."""
    return SwinConfig(
        image_size=32, patch_size=2, num_classes=10, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4,
        drop_path_rate=0.0,
    )


@register_model(SwinTransformer)
def swin_mini_28() -> SwinConfig:
    """Fashion-MNIST model: 28x28 grayscale, patch 2 (14x14), window 7, embed 64, depths 2-6-2, heads 2-4-8."""
    return SwinConfig(
        image_size=28, patch_size=2, in_channels=1, num_classes=10, embed_dim=64, depths=(2, 6, 2),
        num_heads=(2, 4, 8), window_size=7, drop_path_rate=0.1,
    )
