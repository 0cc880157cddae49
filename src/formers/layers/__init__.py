"""Shared building blocks: the only home of attention math, masks, positions, norms, FFN and embeddings."""

from formers.layers.attention import KVCache, MultiHeadAttention, SelfAttention, scaled_dot_product_attention
from formers.layers.drop_path import DropPath, drop_path, drop_path_rates
from formers.layers.blocks import DecoderBlock, EncoderBlock, PreNormDecoderBlock, PreNormEncoderBlock
from formers.layers.embedding import OutputProjection, TokenEmbedding
from formers.layers.feedforward import ACTIVATIONS, FeedForward, get_activation
from formers.layers.masks import causal_mask, combine_masks, padding_to_attn_mask
from formers.layers.patch_embed import PatchEmbedding
from formers.layers.pixel_embed import PixelEmbedding, PixelToPatch
from formers.layers.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_table
from formers.layers.validation import (
    check_ids_shape,
    check_image_size,
    check_images,
    check_padding_mask,
    check_token_ids,
    value_checks,
)

__all__ = [
    "ACTIVATIONS",
    "DecoderBlock",
    "DropPath",
    "EncoderBlock",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "OutputProjection",
    "PatchEmbedding",
    "PixelEmbedding",
    "PixelToPatch",
    "PreNormDecoderBlock",
    "PreNormEncoderBlock",
    "SelfAttention",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "causal_mask",
    "check_ids_shape",
    "check_image_size",
    "check_images",
    "check_padding_mask",
    "check_token_ids",
    "combine_masks",
    "drop_path",
    "drop_path_rates",
    "get_activation",
    "padding_to_attn_mask",
    "scaled_dot_product_attention",
    "sinusoidal_table",
    "value_checks",
]
