"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017, arXiv:1706.03762).

Checked against Hugging Face ``transformers``' ``MarianMTModel`` (post-norm encoder-decoder with sinusoidal
positions) through ``formers.interop.marian``: same logits to 1e-5 in float32 and same greedy translations.

Notable choices: positions start at 0; sinusoids are interleaved as in the paper (``sinusoidal_layout=
"concatenated"`` for Marian); source and target embeddings and the output projection can share one matrix
(``share_embeddings``, ``tie_output``) as in sec. 3.4, with embeddings scaled by sqrt(D).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from formers.config import (
    Count,
    Epsilon,
    Probability,
    SeqLen,
    TokenId,
    VocabSize,
    Width,
    check_fields,
)
from formers.layers import (
    ACTIVATIONS,
    DecoderBlock,
    EncoderBlock,
    KVCache,
    LayerCaches,
    LearnedPositionalEmbedding,
    OutputProjection,
    PreNormDecoderBlock,
    PreNormEncoderBlock,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    check_ids_shape,
    check_int,
    check_padding_mask,
    mask_to_bias,
    padding_to_attn_mask,
)
from formers.layers.decode_attention import decode_kernel_applies
from formers.layers.validation import should_check_values
from formers.models.outputs import Seq2SeqOutput, check_seq2seq_inputs, seq2seq_output
from formers.registry import register_family, register_model


@dataclass
class TransformerConfig:
    """Hyper-parameters of the encoder-decoder Transformer (defaults: the paper's base model)."""

    src_vocab_size: VocabSize = 32000
    tgt_vocab_size: VocabSize = 32000
    embed_dim: Width = 512
    num_encoder_layers: Count = 6
    num_decoder_layers: Count = 6
    num_heads: Count = 8
    ffn_dim: Width = 2048
    decoder_num_heads: Count | None = None  # None: same as num_heads
    decoder_ffn_dim: Width | None = None  # None: same as ffn_dim
    dropout: Probability = 0.1
    attn_dropout: Probability = 0.0
    activation_dropout: Probability = 0.0
    activation: str = "relu"
    max_seq_len: SeqLen = 256
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    sinusoidal_layout: Literal["interleaved", "concatenated"] = "interleaved"
    scale_embedding: bool = True
    share_embeddings: bool = True  # one matrix for source and target tokens (joint vocabulary)
    tie_output: bool = True  # output projection uses the target embedding matrix
    output_bias: bool = False
    norm_first: bool = False  # pre-norm blocks instead of the paper's post-norm
    final_norm: bool = False  # LayerNorm after the last encoder and decoder block (use with pre-norm)
    layer_norm_eps: Epsilon = 1e-5
    pad_id: TokenId = 0
    bos_id: TokenId = 1  # first decoder input ("decoder start")
    eos_id: TokenId = 2
    tokenizer: dict = field(default_factory=dict)  # tokenizer metadata saved with checkpoints

    def __post_init__(self) -> None:
        check_fields(self)
        for heads_name, heads in (("num_heads", self.num_heads), ("decoder_num_heads", self.decoder_num_heads)):
            if heads is not None and self.embed_dim % heads:
                raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by {heads_name} ({heads})")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                f"share_embeddings=True needs src_vocab_size == tgt_vocab_size, got {self.src_vocab_size} "
                f"and {self.tgt_vocab_size}"
            )
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if not 0 <= value < self.tgt_vocab_size:
                raise ValueError(f"{name}={value} is outside the target vocabulary [0, {self.tgt_vocab_size})")
        if not 0 <= self.pad_id < self.src_vocab_size:
            raise ValueError(f"pad_id={self.pad_id} is outside the source vocabulary [0, {self.src_vocab_size})")


def _positions(config: TransformerConfig) -> nn.Module:
    if config.positional == "sinusoidal":
        return SinusoidalPositionalEncoding(config.max_seq_len, config.embed_dim, config.sinusoidal_layout)
    if config.positional == "learned":
        return LearnedPositionalEmbedding(config.max_seq_len, config.embed_dim)
    raise ValueError(f"positional must be 'sinusoidal' or 'learned', got {config.positional!r}")


class TransformerEncoder(nn.Module):
    """Token embedding + positions -> N encoder blocks (-> optional final LayerNorm)."""

    def __init__(self, config: TransformerConfig, embed: TokenEmbedding) -> None:
        super().__init__()
        c = config
        self.embed = embed
        self.positions = _positions(c)
        self.dropout = nn.Dropout(c.dropout)
        block = PreNormEncoderBlock if c.norm_first else EncoderBlock
        self.layers = nn.ModuleList(
            block(c.embed_dim, c.num_heads, c.ffn_dim, c.dropout, c.attn_dropout, c.activation_dropout,
                  c.activation, c.layer_norm_eps)
            for _ in range(c.num_encoder_layers)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps) if c.final_norm else nn.Identity()

    def forward(self, src_ids: Tensor, src_padding_mask: Tensor) -> Tensor:
        """(B, S) ids, (B, S) bool mask -> (B, S, D)."""
        positions = torch.arange(src_ids.shape[1], device=src_ids.device)
        x = self.dropout(self.embed(src_ids, "src_ids") + self.positions(positions))
        mask = padding_to_attn_mask(src_padding_mask)
        for layer in self.layers:
            x = layer(x, attn_mask=mask)
        return self.norm(x)


@dataclass
class DecoderState(LayerCaches):
    """Incremental-decoding state: self-attention caches, cross-attention keys/values, source mask.

    A static state (``init_state(..., static=True)``) keeps its write position on the device and every step attends
    over all ``max_len`` self-attention slots with a mask of the filled ones; ``reorder`` then gathers the caches'
    shared row table (:attr:`KVCache.origin`) instead of copying keys and values.
    Fixed shapes, fixed addresses and no host reads: a decoding step can be captured in a CUDA graph
    (:mod:`formers.generation.seq2seq`).
    """

    caches: list[KVCache]
    memory_kv: list[Tensor]  # per layer (2, B, H, S, Dh): keys, values
    memory_mask: Tensor  # (B, 1, 1, S)
    # static steps may read the first slots only (set_window); False where the one-kernel attention reads only the
    # filled slots anyway (a window would only add captured steps)
    windowed: bool = True
    # decoding rows per source row (init_state's ``beams``): the caches hold B * beams rows, the memory B
    beams: int = 1

    @property
    def rows(self) -> int:
        """Decoding rows (the caches' batch)."""
        return self.memory_mask.shape[0] * self.beams

    @property
    def attended_slots(self) -> int:
        """Self-attention slots a static step reads: the window set by :meth:`set_window`, else all of them."""
        return self.caches[0].window or self.max_len

    def set_window(self, window: int | None) -> None:
        """Static state: the next steps read (and :meth:`reorder` copies) only the first ``window`` slots, which the
        caller guarantees hold every filled one; None: all slots."""
        for cache in self.caches:
            cache.window = window

    def copy_from(self, other: DecoderState) -> None:
        """Takes ``other``'s memory (same shapes) in place and empties the caches: reuses this state's addresses."""
        for kv, kv2 in zip(self.memory_kv, other.memory_kv):
            kv.copy_(kv2)
        self.memory_mask.copy_(other.memory_mask)
        self.reset()

    def reorder(self, index: Tensor, memory: bool = True) -> None:
        """Keeps batch rows ``index`` (N,) in every cache (beam search); in place for a static state.

        ``memory=False`` leaves the source rows as they are: right when ``index`` maps every row to a row of the
        same source (beams of one sentence), and it saves copying the cross-attention keys/values every step.
        A static state gathers only the slots of its window (:meth:`set_window`): the later ones are not filled yet.
        """
        if memory and self.beams > 1:
            raise ValueError(f"a state with {self.beams} beams per source row reorders within sentences only "
                             "(memory=False): its memory has one row per source")
        if self.static:
            origin = self.caches[0].origin[:, : self.attended_slots]  # (N, slots), shared by every layer
            origin.copy_(origin.index_select(0, index))  # keys and values stay where their step wrote them
            if not memory:
                return
            for kv in self.memory_kv:
                kv.copy_(kv.index_select(1, index))
            self.memory_mask.copy_(self.memory_mask.index_select(0, index))
            return
        for cache in self.caches:
            cache.reorder(index)
        if not memory:
            return
        self.memory_kv = [kv.index_select(1, index) for kv in self.memory_kv]
        self.memory_mask = self.memory_mask.index_select(0, index)


class TransformerDecoder(nn.Module):
    """Token embedding + positions -> N decoder blocks (-> optional final LayerNorm) -> vocabulary logits."""

    def __init__(self, config: TransformerConfig, embed: TokenEmbedding) -> None:
        super().__init__()
        c = config
        self.embed = embed
        self.positions = _positions(c)
        self.dropout = nn.Dropout(c.dropout)
        self.num_heads = c.decoder_num_heads or c.num_heads
        block = PreNormDecoderBlock if c.norm_first else DecoderBlock
        self.layers = nn.ModuleList(
            block(c.embed_dim, self.num_heads, c.decoder_ffn_dim or c.ffn_dim, c.dropout, c.attn_dropout,
                  c.activation_dropout, c.activation, c.layer_norm_eps)
            for _ in range(c.num_decoder_layers)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps) if c.final_norm else nn.Identity()
        self.output = OutputProjection(
            c.embed_dim, c.tgt_vocab_size, bias=c.output_bias, tied_to=embed if c.tie_output else None
        )

    def forward(
        self,
        tgt_ids: Tensor,
        memory: Tensor | None,
        memory_mask: Tensor,
        tgt_padding_mask: Tensor | None = None,
        state: DecoderState | None = None,
    ) -> Tensor:
        """(B, T) target ids -> logits (B, T, V); with ``state``, T new positions after the cached ones."""
        return self.output(self.features(tgt_ids, memory, memory_mask, tgt_padding_mask, state))

    def features(
        self,
        tgt_ids: Tensor,
        memory: Tensor | None,
        memory_mask: Tensor,
        tgt_padding_mask: Tensor | None = None,
        state: DecoderState | None = None,
    ) -> Tensor:
        """(B, T) target ids -> the final hidden states (B, T, D) that ``self.output`` projects to logits."""
        t = tgt_ids.shape[1]
        self_mask = padding_to_attn_mask(tgt_padding_mask) if tgt_padding_mask is not None else None
        static = state is not None and state.static
        if static:
            # Write position read on the device: same shapes every step; the mask covers all max_len slots.
            positions = state.begin_static_step(t, tgt_ids.device)  # (T,)
            slots = torch.arange(state.attended_slots, device=tgt_ids.device)  # (T_max,) or its window
            self_mask = (slots[None, :] <= positions[:, None])[None, None]  # (1, 1, T, T_max)
        else:
            start = state.length if state is not None else 0
            positions = torch.arange(start, start + t, device=tgt_ids.device)
        x = self.dropout(self.embed(tgt_ids, "tgt_ids") + self.positions(positions))
        if static:  # both masks as additive biases once per step, not converted again by every layer's attention
            self_mask, memory_mask = mask_to_bias(self_mask, x.dtype), mask_to_bias(memory_mask, x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(
                x,
                memory,
                self_mask=self_mask,
                memory_mask=memory_mask,
                cache=state.caches[i] if state is not None else None,
                memory_kv=state.memory_kv[i] if state is not None else None,
                is_causal=not static,  # a static step's mask is causal already (no per-layer causal mask to fold in)
            )
        if static:
            state.end_static_step(t)
        return self.norm(x)


@register_family
class Transformer(nn.Module):
    """Encoder-decoder Transformer for sequence-to-sequence tasks (translation).

    Call as ``model(src_ids, tgt_ids, src_padding_mask=None, tgt_padding_mask=None)``; masks are boolean,
    True = real token. A missing ``src_padding_mask`` is derived from ``pad_id``; a missing
    ``tgt_padding_mask`` means every target position is real (the decoder start may equal ``pad_id``).
    """

    family = "transformer"
    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        src_embed = TokenEmbedding(c.src_vocab_size, c.embed_dim, c.pad_id, c.scale_embedding, name="src_ids")
        tgt_embed = (
            src_embed
            if c.share_embeddings
            else TokenEmbedding(c.tgt_vocab_size, c.embed_dim, c.pad_id, c.scale_embedding, name="tgt_ids")
        )
        self.encoder = TransformerEncoder(c, src_embed)
        self.decoder = TransformerDecoder(c, tgt_embed)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform linear weights and zero biases (as fairseq's Transformer); embeddings N(0, D^-1/2)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _src_mask(self, src_ids: Tensor, src_padding_mask: Tensor | None) -> Tensor:
        check_ids_shape(src_ids, "src_ids", self.config.max_seq_len)
        check_padding_mask(src_padding_mask, src_ids, "src_padding_mask")
        if src_padding_mask is None:
            src_padding_mask = src_ids != self.config.pad_id
            if should_check_values(src_ids) and not bool(src_padding_mask.any(dim=1).all()):
                raise ValueError("src_ids has a row made only of pad_id tokens: the source sentence is empty")
        return src_padding_mask

    def encode(self, src_ids: Tensor, src_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encodes sources (B, S) -> (memory (B, S, D), src_padding_mask (B, S))."""
        src_padding_mask = self._src_mask(src_ids, src_padding_mask)
        return self.encoder(src_ids, src_padding_mask), src_padding_mask

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor | None,
        src_padding_mask: Tensor | None,
        tgt_padding_mask: Tensor | None = None,
        state: DecoderState | None = None,
    ) -> Tensor:
        """Target ids (B, T) against ``memory`` (B, S, D) -> logits (B, T, V).

        With ``state`` (from :meth:`init_state`), ``tgt_ids`` are the new positions only and the state advances.
        """
        return self.decoder.output(self._decoder_states(tgt_ids, memory, src_padding_mask, tgt_padding_mask, state))

    def _decoder_states(
        self,
        tgt_ids: Tensor,
        memory: Tensor | None,
        src_padding_mask: Tensor | None,
        tgt_padding_mask: Tensor | None = None,
        state: DecoderState | None = None,
    ) -> Tensor:
        """:meth:`decode` up to the output projection: the decoder's final hidden states (B, T, D)."""
        offset = state.length if state is not None else 0
        if state is not None and tgt_padding_mask is not None:
            raise ValueError(
                "tgt_padding_mask is not supported with a decoding state: cached decoding feeds real tokens only"
            )
        if state is not None:
            check_ids_shape(tgt_ids, "tgt_ids", self.config.max_seq_len - offset)
        else:
            check_ids_shape(tgt_ids, "tgt_ids", self.config.max_seq_len)
        check_padding_mask(tgt_padding_mask, tgt_ids, "tgt_padding_mask")
        memory_mask = state.memory_mask if state is not None else padding_to_attn_mask(src_padding_mask)
        return self.decoder.features(tgt_ids, memory, memory_mask, tgt_padding_mask, state)

    def init_state(
        self, memory: Tensor, src_padding_mask: Tensor, max_len: int | None = None, static: bool = False,
        beams: int = 1,
    ) -> DecoderState:
        """Prepares incremental decoding of up to ``max_len`` target positions for ``memory`` (B, S, D).

        ``static``: a fixed-shape state (see :class:`DecoderState`); same outputs, but the caller keeps the positions
        decoded within ``max_len`` (not checked: that would read the device).
        ``beams``: decoding rows per source (beam search): rows ``[b * beams, (b + 1) * beams)`` decode source ``b``,
        whose cross-attention keys and values are kept and read once for all of them (not copied per beam).
        """
        check_int(beams, "beams", minimum=1)
        max_len = self.config.max_seq_len if max_len is None else min(max_len, self.config.max_seq_len)
        dec = self.decoder
        head_dim = self.config.embed_dim // dec.num_heads
        filled = torch.zeros((), dtype=torch.long, device=memory.device)  # one write position for every layer
        rows = memory.shape[0] * beams
        # static: one row table for every layer, through which beam search reorders (KVCache.origin)
        origin = torch.arange(rows, device=memory.device)[:, None].repeat(1, max_len) if static else None
        caches = [
            KVCache(rows, dec.num_heads, max_len, head_dim, memory.dtype, memory.device, static, filled,
                    origin=origin)
            for _ in dec.layers
        ]
        # each layer's cross-attention keys and values as one (2, B, H, S, Dh) tensor: what the one-kernel
        # cross-attention of a CUDA decoding step reads (it unpacks as a (keys, values) pair everywhere else)
        memory_kv = [torch.stack(layer.cross_attn.project_kv(memory)) for layer in dec.layers]
        # the one-kernel self-attention reads only the filled slots: no use for windows where every layer takes it
        kernel = static and all(layer.self_attn.backend == "sdpa" for layer in dec.layers) and decode_kernel_applies(
            memory[:, :1], head_dim, head_dim, memory.dtype
        )
        return DecoderState(caches, memory_kv, padding_to_attn_mask(src_padding_mask), windowed=not kernel,
                            beams=beams)

    def forward(
        self,
        src_ids: Tensor,
        tgt_ids: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
        targets: Tensor | None = None,
        label_smoothing: float = 0.0,
        return_logits: bool | None = None,
    ) -> Seq2SeqOutput:
        """Teacher-forced forward pass, and the training loss when ``targets`` are given.

        Args:
            src_ids: source tokens (B, S).
            tgt_ids: decoder inputs (B, T), starting with ``bos_id``.
            src_padding_mask: (B, S) bool, True = real token.
            tgt_padding_mask: (B, T) bool, True = real token.
            targets: (B, T) the token each position predicts (``tgt_ids`` shifted left by one, then ``eos_id``), or
                ``IGNORE_INDEX`` (-100) where no loss is due (padding).
            label_smoothing: epsilon of the loss's label smoothing (uniform over the target vocabulary).
            return_logits: whether ``logits`` are computed; default only without ``targets``. Without logits the
                loss comes from :func:`formers.layers.linear_cross_entropy` (output projection and loss in chunks:
                the (B * T, V) logits never exist); both ways give the same loss and gradients.

        Returns:
            ``Seq2SeqOutput`` with ``logits`` (B, T, V) (None when not asked for), ``encoder_hidden_state``
            (B, S, D) and, given ``targets``, ``loss`` (mean label-smoothed cross-entropy over the counted
            positions, float32) and ``nll`` (the same without smoothing, detached).
        """
        check_seq2seq_inputs(src_ids, tgt_ids, self.config.max_seq_len, targets, label_smoothing, return_logits)
        memory, src_padding_mask = self.encode(src_ids, src_padding_mask)
        hidden = self._decoder_states(tgt_ids, memory, src_padding_mask, tgt_padding_mask)  # (B, T, D)
        return seq2seq_output(self.decoder.output, hidden, memory, targets, label_smoothing, return_logits)


@register_model(Transformer)
def transformer_base() -> TransformerConfig:
    """Paper base model (Table 3): 6+6 layers, 512 wide, 8 heads, FFN 2048, dropout 0.1."""
    return TransformerConfig()


@register_model(Transformer)
def transformer_big() -> TransformerConfig:
    """Paper big model (Table 3): 6+6 layers, 1024 wide, 16 heads, FFN 4096, dropout 0.3."""
    return TransformerConfig(embed_dim=1024, num_heads=16, ffn_dim=4096, dropout=0.3)


@register_model(Transformer)
def transformer_small() -> TransformerConfig:
    """3+3 layers, 256 wide, 4 heads, FFN 1024: small corpora such as Multi30k on one GPU or a CPU."""
    return TransformerConfig(
        embed_dim=256, num_encoder_layers=3, num_decoder_layers=3, num_heads=4, ffn_dim=1024, dropout=0.1
    )


@register_model(Transformer)
def transformer_tiny() -> TransformerConfig:
    """2+2 layers, 128 wide, 4 heads, FFN 512: minutes on a CPU."""
    return TransformerConfig(
        embed_dim=128, num_encoder_layers=2, num_decoder_layers=2, num_heads=4, ffn_dim=512, dropout=0.1
    )
