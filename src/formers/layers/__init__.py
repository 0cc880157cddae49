"""Shared building blocks: the only home of attention math, masks, positions, norms, FFN and embeddings."""

from formers.layers.attention import (
    KVCache,
    LayerCaches,
    MultiHeadAttention,
    SelfAttention,
    scaled_dot_product_attention,
)
from formers.layers.attention_bias import AttentionBias, grid_offset_index
from formers.layers.blocks import (
    DecoderBlock,
    EncoderBlock,
    FusedPreNormEncoderBlock,
    PreNormDecoderBlock,
    PreNormEncoderBlock,
)
from formers.layers.conv_ffn import ConvFeedForward
from formers.layers.cross_entropy import IGNORE_INDEX, cross_entropy
from formers.layers.drop_path import DropPath, drop_path, drop_path_rates
from formers.layers.embedding import OutputProjection, TokenEmbedding
from formers.layers.feedforward import ACTIVATIONS, FeedForward, get_activation
from formers.layers.layer_scale import LayerScale, LayerScale2d
from formers.layers.linear_cross_entropy import (
    linear_cross_entropy,
    logits_cross_entropy,
)
from formers.layers.luong_attention import LuongAttention
from formers.layers.masks import (
    causal_mask,
    combine_masks,
    mask_to_bias,
    padding_to_attn_mask,
)
from formers.layers.patch_embed import PatchEmbedding
from formers.layers.patch_merging import PatchMerging
from formers.layers.pixel_embed import (
    PixelEmbedding,
    PixelToPatch,
    PixelwisePixelToPatch,
    WholeImagePixelEmbedding,
)
from formers.layers.pool_mixer import PoolMixer
from formers.layers.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    resample_grid_positions,
    sinusoidal_table,
)
from formers.layers.relative_position import (
    WindowRelativePositionBias,
    relative_position_index,
)
from formers.layers.validation import (
    check_ids_shape,
    check_image_size,
    check_images,
    check_int,
    check_number,
    check_padding_mask,
    check_text,
    check_token_ids,
    value_checks,
)
from formers.layers.windows import (
    cyclic_shift,
    pad_to_windows,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

__all__ = [
    "ACTIVATIONS",
    "IGNORE_INDEX",
    "cross_entropy",
    "linear_cross_entropy",
    "logits_cross_entropy",
    "AttentionBias",
    "ConvFeedForward",
    "DecoderBlock",
    "DropPath",
    "EncoderBlock",
    "FeedForward",
    "FusedPreNormEncoderBlock",
    "KVCache",
    "LayerCaches",
    "LayerScale",
    "LayerScale2d",
    "LearnedPositionalEmbedding",
    "LuongAttention",
    "MultiHeadAttention",
    "OutputProjection",
    "PatchEmbedding",
    "PatchMerging",
    "PixelEmbedding",
    "PixelToPatch",
    "PixelwisePixelToPatch",
    "PoolMixer",
    "PreNormDecoderBlock",
    "PreNormEncoderBlock",
    "SelfAttention",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "WholeImagePixelEmbedding",
    "WindowRelativePositionBias",
    "causal_mask",
    "check_ids_shape",
    "check_image_size",
    "check_images",
    "check_int",
    "check_number",
    "check_padding_mask",
    "check_text",
    "check_token_ids",
    "combine_masks",
    "cyclic_shift",
    "drop_path",
    "drop_path_rates",
    "get_activation",
    "grid_offset_index",
    "mask_to_bias",
    "pad_to_windows",
    "padding_to_attn_mask",
    "relative_position_index",
    "resample_grid_positions",
    "scaled_dot_product_attention",
    "shifted_window_mask",
    "sinusoidal_table",
    "value_checks",
    "window_partition",
    "window_reverse",
]
