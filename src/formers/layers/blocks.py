"""Encoder and decoder blocks: post-norm (the paper, x = LN(x + Sublayer(x))) and pre-norm variants.

The post-norm classes follow Vaswani et al. 2017 sec. 3.1; the pre-norm subclasses (x = x + Sublayer(LN(x)))
train more stably when deep and are what GPT-2 and ViT use. Both share parameters and names.

Positional encodings can be given to every attention layer instead of once at the input, as DETR does (Carion et
al. 2020, fig. 10): ``pos`` / ``query_pos`` / ``memory_pos`` are added to the queries and keys of the attention
inputs, never to the values. That needs separate q/k/v projections (:class:`MultiHeadAttention`).
"""

from __future__ import annotations

from torch import Tensor, nn

from formers.layers.attention import KVCache, MultiHeadAttention, SelfAttention
from formers.layers.drop_path import DropPath
from formers.layers.feedforward import FeedForward


class EncoderBlock(nn.Module):
    """Self-attention + feed-forward, each wrapped in dropout, residual and LayerNorm (post-norm).

    With ``is_causal=True`` (and optionally a ``KVCache``) it is also the block of decoder-only models.

    Args:
        embed_dim: D.
        num_heads: attention heads.
        ffn_dim: feed-forward hidden width.
        dropout: dropout on each sublayer output (residual dropout).
        attn_dropout: dropout on attention weights.
        activation_dropout: dropout inside the feed-forward network.
        activation: feed-forward activation name.
        layer_norm_eps: LayerNorm epsilon.
        bias: biases in the linear layers.
        drop_path: stochastic depth rate of both residual branches (ViT/DeiT training; 0 = none).
    """

    attention_cls: type[MultiHeadAttention] | type[SelfAttention] = MultiHeadAttention

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.self_attn = self.attention_cls(embed_dim, num_heads, dropout=attn_dropout, bias=bias)
        self.self_attn_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.ffn = FeedForward(embed_dim, ffn_dim, activation, dropout=activation_dropout, bias=bias)
        self.ffn_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    def _attend(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        attn_bias: Tensor | None,
        is_causal: bool,
        cache: KVCache | None,
        pos: Tensor | None = None,
    ) -> Tensor:
        if pos is None:
            out = self.self_attn(x, attn_mask=attn_mask, attn_bias=attn_bias, is_causal=is_causal, cache=cache)
        elif isinstance(self.self_attn, MultiHeadAttention):
            query_key = x + pos  # positions reach the queries and keys, not the values
            out = self.self_attn(
                query_key, query_key, x, attn_mask=attn_mask, attn_bias=attn_bias, is_causal=is_causal, cache=cache
            )
        else:
            raise ValueError(
                f"pos needs separate query/key/value projections; {type(self).__name__} fuses them (SelfAttention)"
            )
        return self.drop_path(self.dropout(out))

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.drop_path(self.dropout(self.ffn(x)))

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        pos: Tensor | None = None,
    ) -> Tensor:
        """(B, T, D) -> (B, T, D).

        Args:
            attn_mask: boolean, broadcastable to (B, H, T, T_total), True = may attend.
            attn_bias: additive bias broadcastable to (B, H, T, T_total).
            is_causal: causal self-attention (decoder-only models).
            cache: KV cache holding earlier positions (incremental decoding); T_total counts them too.
            pos: positional encodings (B or 1, T, D) added to the attention's queries and keys (not its values).
        """
        x = self.self_attn_norm(x + self._attend(x, attn_mask, attn_bias, is_causal, cache, pos))
        return self.ffn_norm(x + self._feed_forward(x))


class PreNormEncoderBlock(EncoderBlock):
    """Encoder block with LayerNorm before each sublayer: x = x + Sublayer(LN(x))."""

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        pos: Tensor | None = None,
    ) -> Tensor:
        """Same contract as :meth:`EncoderBlock.forward`."""
        x = x + self._attend(self.self_attn_norm(x), attn_mask, attn_bias, is_causal, cache, pos)
        return x + self._feed_forward(self.ffn_norm(x))


class FusedPreNormEncoderBlock(PreNormEncoderBlock):
    """Pre-norm encoder block whose attention projects q, k and v with one fused GEMM (:class:`SelfAttention`).

    Same computation as :class:`PreNormEncoderBlock`; the weights are named ``self_attn.qkv`` instead of
    ``self_attn.{q,k,v}_proj`` (the GPT-2 layout).
    """

    attention_cls = SelfAttention


def _mask_or_bias(mask: Tensor | None) -> dict[str, Tensor | None]:
    """A boolean mask reaches attention as ``attn_mask``; a float one is an additive bias (``attn_bias``) that the
    caller made once for all layers, where each layer's attention would otherwise convert the boolean mask again."""
    if mask is not None and mask.is_floating_point():
        return {"attn_bias": mask}
    return {"attn_mask": mask}


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the encoder output, feed-forward (post-norm).

    Args are those of :class:`EncoderBlock`; ``memory_dim`` is the encoder output width when it differs.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        activation: str = "relu",
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        memory_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, dropout=attn_dropout, bias=bias)
        self.self_attn_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.cross_attn = MultiHeadAttention(embed_dim, num_heads, dropout=attn_dropout, bias=bias, kv_dim=memory_dim)
        self.cross_attn_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.ffn = FeedForward(embed_dim, ffn_dim, activation, dropout=activation_dropout, bias=bias)
        self.ffn_norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def _self_attn(
        self,
        x: Tensor,
        self_mask: Tensor | None,
        cache: KVCache | None,
        query_pos: Tensor | None = None,
        is_causal: bool = True,
    ) -> Tensor:
        query_key = x if query_pos is None else x + query_pos  # positions reach the queries and keys only
        out = self.self_attn(query_key, query_key, x, **_mask_or_bias(self_mask), is_causal=is_causal, cache=cache)
        return self.dropout(out)

    def _cross_attn(
        self,
        x: Tensor,
        memory: Tensor | None,
        memory_mask: Tensor | None,
        memory_kv,
        query_pos: Tensor | None = None,
        memory_pos: Tensor | None = None,
    ) -> Tensor:
        query = x if query_pos is None else x + query_pos
        if memory_pos is None:
            out = self.cross_attn(query, memory, **_mask_or_bias(memory_mask), kv=memory_kv)
        elif memory_kv is not None or memory is None:
            raise ValueError("memory_pos needs memory itself: precomputed memory_kv already hold their keys")
        else:
            out = self.cross_attn(query, memory + memory_pos, memory, **_mask_or_bias(memory_mask))
        return self.dropout(out)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: KVCache | None = None,
        memory_kv: tuple[Tensor, Tensor] | None = None,
        *,
        query_pos: Tensor | None = None,
        memory_pos: Tensor | None = None,
        is_causal: bool = True,
    ) -> Tensor:
        """Decodes x (B, T, D) against memory (B, S, Dm).

        Args:
            self_mask: extra boolean mask on self-attention (B or 1, 1, T, T_total) (target padding), or the same
                as an additive float bias (0 / -inf), made once for every layer of a decoding step.
            memory_mask: boolean (B, 1, 1, S), True = real source token; or its additive float bias.
            cache: self-attention KV cache for incremental decoding.
            memory_kv: cross-attention keys/values precomputed from memory (then ``memory`` may be None).
            query_pos: positional encodings (B or 1, T, D) added to the self-attention's queries and keys and to
                the cross-attention's queries (DETR's object queries).
            memory_pos: positional encodings (B or 1, S, Dm) added to the cross-attention's keys.
            is_causal: causal self-attention (sequence decoding); False lets every position see every other
                (DETR decodes its set of queries in parallel).
        """
        x = self.self_attn_norm(x + self._self_attn(x, self_mask, cache, query_pos, is_causal))
        x = self.cross_attn_norm(x + self._cross_attn(x, memory, memory_mask, memory_kv, query_pos, memory_pos))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class PreNormDecoderBlock(DecoderBlock):
    """Decoder block with LayerNorm before each sublayer."""

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: KVCache | None = None,
        memory_kv: tuple[Tensor, Tensor] | None = None,
        *,
        query_pos: Tensor | None = None,
        memory_pos: Tensor | None = None,
        is_causal: bool = True,
    ) -> Tensor:
        """Same contract as :meth:`DecoderBlock.forward`."""
        x = x + self._self_attn(self.self_attn_norm(x), self_mask, cache, query_pos, is_causal)
        x = x + self._cross_attn(self.cross_attn_norm(x), memory, memory_mask, memory_kv, query_pos, memory_pos)
        return x + self.dropout(self.ffn(self.ffn_norm(x)))
