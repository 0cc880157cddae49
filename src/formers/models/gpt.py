"""GPT-2: a decoder-only pre-norm Transformer language model (Radford et al. 2019, "Language Models are
Unsupervised Multitask Learners"; https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf).

Checked against Hugging Face ``transformers``' ``GPT2LMHeadModel`` through ``formers.interop.gpt2``: same logits
to 1e-5 in float32 (with and without left padding) and same greedy continuations as its ``generate``. The
readable reference it follows is Karpathy's nanoGPT ``model.py``.

Architecture: token + learned absolute position embeddings, dropout, N pre-norm causal blocks (GELU with the
tanh approximation, FFN 4D), a final LayerNorm and an output projection tied to the token embedding.

Notable choices and differences:

- GPT-2's fused ``c_attn`` (one (D, 3D) Conv1D) is the fused ``qkv`` ``nn.Linear`` (3D, D) of the shared
  ``SelfAttention`` (one GEMM for q, k and v).
- ``vocab_multiple`` rounds the embedding/head rows up (GPT-2: 50257 -> 50304) so the largest GEMM has aligned
  shapes; the extra rows stay zero and their logits are cut off (nanoGPT's and Megatron's vocabulary padding).
- ``bias=False`` removes the linear biases (nanoGPT's option); the LayerNorms keep theirs.
- Batched prompts of different lengths are LEFT padded (``padding_mask``, True = real token): positions count
  from each row's first real token and padded keys are ignored, so every real token's logits equal those of
  the row run alone. Padded queries attend to themselves only; their outputs are meaningless but finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
from formers.generation.causal_lm import Streamer, generate
from formers.layers import (
    ACTIVATIONS,
    FusedPreNormEncoderBlock,
    KVCache,
    LayerCaches,
    LearnedPositionalEmbedding,
    OutputProjection,
    TokenEmbedding,
    check_ids_shape,
    check_padding_mask,
    cross_entropy,
    mask_to_bias,
)
from formers.models.outputs import CausalLMOutput
from formers.registry import register_family, register_model


@dataclass
class GPTConfig:
    """Hyper-parameters of a GPT-2 style language model (defaults: GPT-2 124M)."""

    vocab_size: VocabSize = 50257
    max_seq_len: SeqLen = 1024
    embed_dim: Width = 768
    num_layers: Count = 12
    num_heads: Count = 12
    ffn_dim: Width | None = None  # None: 4 * embed_dim
    dropout: Probability = 0.1  # on embeddings and on each sublayer output
    attn_dropout: Probability = 0.1
    bias: bool = True  # biases of the linear layers
    layer_norm_eps: Epsilon = 1e-5
    activation: str = "gelu_tanh"
    tie_embeddings: bool = True  # output projection uses the token embedding matrix
    vocab_multiple: Count = 1  # embedding rows rounded up to a multiple (64: 50257 -> 50304, aligned GEMMs)
    eos_id: TokenId | None = 50256
    pad_id: TokenId | None = None  # None: generation fills ended rows with eos_id
    tokenizer: dict = field(default_factory=dict)  # tokenizer metadata saved with checkpoints

    def __post_init__(self) -> None:
        check_fields(self)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        for name in ("eos_id", "pad_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(f"{name}={value} is outside the vocabulary [0, {self.vocab_size})")

    @property
    def hidden_dim(self) -> int:
        """The feed-forward width: ``ffn_dim``, or 4 * ``embed_dim`` when unset."""
        return self.ffn_dim if self.ffn_dim is not None else 4 * self.embed_dim

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding/output matrices: ``vocab_size`` rounded up to ``vocab_multiple``."""
        return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple


@dataclass
class GPTState(LayerCaches):
    """Incremental-decoding state: per-layer KV caches plus per-row positions and the key padding mask.

    Attributes:
        caches: one pre-allocated :class:`KVCache` per layer.
        key_mask: (B, T_max) bool, True = the cached key at that slot is a real token.
        num_real: (B,) real tokens seen per row, i.e. the position of the row's next token.
        padded: whether any padding was fed (otherwise plain causal attention needs no mask).

    A static state (``init_cache(..., static=True)``) keeps its write position on the device and every step
    attends over all ``max_len`` slots with a mask of the filled ones: fixed shapes and no host reads, so a
    decoding step can be captured in a CUDA graph (:mod:`formers.generation.graphed`).
    """

    caches: list[KVCache]
    key_mask: Tensor
    num_real: Tensor
    padded: bool = False

    def reset(self) -> None:
        """Empties the state in place, keeping every buffer's address (for reuse by a captured graph)."""
        super().reset()
        self.key_mask.zero_()
        self.num_real.zero_()
        self.padded = False

    def reorder(self, index: Tensor) -> None:
        """Keeps batch rows ``index`` (N,) (beam search)."""
        for cache in self.caches:
            cache.reorder(index)
        self.key_mask = self.key_mask.index_select(0, index)
        self.num_real = self.num_real.index_select(0, index)


@register_family
class GPT(nn.Module):
    """Decoder-only causal language model.

    Call as ``model(input_ids, padding_mask=None, cache=None)``; see :meth:`forward`.
    """

    family = "gpt"
    config_class = GPTConfig

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = TokenEmbedding(c.vocab_size, c.embed_dim, num_rows=c.padded_vocab_size)
        self.positions = LearnedPositionalEmbedding(c.max_seq_len, c.embed_dim)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            FusedPreNormEncoderBlock(
                c.embed_dim, c.num_heads, c.hidden_dim, dropout=c.dropout, attn_dropout=c.attn_dropout,
                activation=c.activation, layer_norm_eps=c.layer_norm_eps, bias=c.bias,
            )
            for _ in range(c.num_layers)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.output = OutputProjection(
            c.embed_dim, c.vocab_size, tied_to=self.embed if c.tie_embeddings else None, num_rows=c.padded_vocab_size
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: weights N(0, 0.02), zero biases, residual projections N(0, 0.02 / sqrt(2 * num_layers))."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.embed.reset_parameters(std=0.02)  # the alignment rows beyond vocab_size stay zero
        nn.init.normal_(self.positions.weight, std=0.02)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.output.weight, std=0.02)
            with torch.no_grad():
                self.output.weight[self.config.vocab_size :].zero_()
        residual_std = 0.02 / math.sqrt(2 * self.config.num_layers)
        for layer in self.layers:
            nn.init.normal_(layer.self_attn.out_proj.weight, std=residual_std)
            nn.init.normal_(layer.ffn.fc2.weight, std=residual_std)

    def init_cache(
        self,
        batch_size: int,
        max_len: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        static: bool = False,
    ) -> GPTState:
        """Pre-allocates the decoding state for ``batch_size`` rows of up to ``max_len`` slots.

        Args:
            batch_size: B.
            max_len: capacity (prompt + new tokens, padding included); default and limit ``max_seq_len``.
            dtype: cache dtype (default: the model's).
            device: cache device (default: the model's).
            static: fixed-shape state (see :class:`GPTState`); same outputs as the default one, but the caller
                keeps the slots used within ``max_len`` (not checked: that would read the device).
        """
        c = self.config
        max_len = c.max_seq_len if max_len is None else max_len
        if not 1 <= max_len <= c.max_seq_len:
            raise ValueError(f"max_len must be in [1, max_seq_len={c.max_seq_len}], got {max_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        weight = self.embed.weight
        dtype = weight.dtype if dtype is None else dtype
        device = weight.device if device is None else torch.device(device)
        head_dim = c.embed_dim // c.num_heads
        filled = torch.zeros((), dtype=torch.long, device=device)  # one write position for every layer (static)
        caches = [KVCache(batch_size, c.num_heads, max_len, head_dim, dtype, device, static, filled)
                  for _ in self.layers]
        key_mask = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        num_real = torch.zeros(batch_size, dtype=torch.long, device=device)
        return GPTState(caches, key_mask, num_real)

    def _check(self, input_ids: Tensor, padding_mask: Tensor | None, cache: GPTState | None) -> None:
        c = self.config
        check_ids_shape(input_ids, "input_ids", c.max_seq_len)
        if cache is None:
            check_padding_mask(padding_mask, input_ids, "padding_mask")
            return
        if padding_mask is not None:
            # With a cache a chunk may be all padding for a row (long left padding fed in pieces): no value check.
            if not isinstance(padding_mask, Tensor) or padding_mask.dtype != torch.bool:
                got = padding_mask.dtype if isinstance(padding_mask, Tensor) else type(padding_mask).__name__
                raise TypeError(f"padding_mask must be a boolean tensor (True = real token), got {got}")
            if padding_mask.shape != input_ids.shape:
                raise ValueError(
                    f"padding_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                    f"got {tuple(padding_mask.shape)}"
                )
        if not isinstance(cache, GPTState):
            raise TypeError(f"cache must be a GPTState from init_cache, got {type(cache).__name__}")
        b, t = input_ids.shape
        if cache.key_mask.shape[0] != b:
            raise ValueError(f"input_ids has batch size {b} but the cache was made for {cache.key_mask.shape[0]} rows")
        if not cache.static and cache.length + t > cache.max_len:  # a static state counts on the device
            raise ValueError(
                f"input_ids adds {t} positions to {cache.length} cached ones, beyond the cache capacity "
                f"{cache.max_len} (max_seq_len={c.max_seq_len})"
            )

    def forward(
        self,
        input_ids: Tensor,
        padding_mask: Tensor | None = None,
        cache: GPTState | None = None,
        targets: Tensor | None = None,
        return_logits: bool | None = None,
    ) -> CausalLMOutput:
        """Next-token logits for every position, and/or the training loss when ``targets`` are given.

        Args:
            input_ids: (B, T) token ids; with ``cache``, the T positions following the cached ones.
            padding_mask: (B, T) bool, True = real token. Batched prompts are left padded; positions count
                from each row's first real token and padded keys are ignored.
            cache: decoding state from :meth:`init_cache`; the new keys/values are appended to it.
            targets: (B, T) the token that follows each position (``input_ids`` shifted left by one; unlike
                Hugging Face's ``labels``, no shift is made here), or ``IGNORE_INDEX`` (-100) where no loss is due.
            return_logits: whether ``logits`` are computed. Default: only without ``targets``. With ``targets`` and
                no logits, the loss comes from :func:`formers.layers.linear_cross_entropy` (the output projection
                and the loss in chunks of rows: the (B * T, V) logits never exist); with logits, from
                :func:`formers.layers.cross_entropy` on them. Both give the same loss and gradients.

        Returns:
            ``CausalLMOutput`` with ``logits`` (B, T, V) (None when ``return_logits`` is False) and, given
            ``targets``, ``loss``: the mean cross-entropy in float32.
        """
        self._check(input_ids, padding_mask, cache)
        if targets is not None and targets.shape != input_ids.shape:
            raise ValueError(
                f"targets must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(targets.shape)}"
            )
        if return_logits is False and targets is None:
            raise ValueError("return_logits=False needs targets: without them there is nothing to return")
        b, t = input_ids.shape
        device = input_ids.device
        if padding_mask is None and cache is None:
            # Unpadded training/scoring batch: no mask at all, so attention takes the fused causal (flash) path.
            positions, attn_mask = torch.arange(t, device=device)[None], None  # (1, T)
        else:
            positions, attn_mask = self._positions_and_mask(padding_mask, cache, b, t, device)
        x = self.dropout(self.embed(input_ids) + self.positions(positions))  # (B, T, D)
        static = cache is not None and cache.static
        attn_bias = None
        if static:  # the step's mask as an additive bias once, not converted again by every layer's attention
            attn_bias = mask_to_bias(attn_mask, x.dtype)
            attn_mask = None
        for i, layer in enumerate(self.layers):
            layer_cache = cache.caches[i] if cache is not None else None
            x = layer(x, attn_mask=attn_mask, attn_bias=attn_bias, is_causal=attn_mask is None and attn_bias is None,
                      cache=layer_cache)
        if static:
            cache.end_static_step(t)
        x = self.norm(x)  # (B, T, D)
        if return_logits is None:
            return_logits = targets is None
        if not return_logits:
            loss = self.output.cross_entropy(x, targets) if targets is not None else None
            return CausalLMOutput(logits=None, loss=loss)
        scores = self.output.all_rows(x)  # (B, T, rows): rows >= V, aligned
        logits = scores[..., : self.config.vocab_size]  # (B, T, V), a view
        if targets is None:
            return CausalLMOutput(logits=logits)
        loss = cross_entropy(scores.flatten(0, 1), targets.flatten(), num_classes=self.config.vocab_size)
        return CausalLMOutput(logits=logits, loss=loss)

    def _positions_and_mask(
        self, padding_mask: Tensor | None, cache: GPTState | None, b: int, t: int, device: torch.device
    ) -> tuple[Tensor, Tensor | None]:
        """Positions (B, T) and the attention mask (B, 1, T, T_total) or None; records the new slots in ``cache``."""
        if cache is not None and cache.static and t == 1 and padding_mask is None:
            # A decoding step (one real token per row): its position is the row's count of real tokens, and the
            # slots a static state has filled (True in its key mask) are exactly those it may attend to.
            slots = cache.begin_static_step(1, device)
            cache.key_mask.index_fill_(1, slots, True)
            positions = cache.num_real[:, None].clone()  # (B, 1)
            cache.num_real += 1
            return positions, cache.key_mask[:, None, None, :]  # (B, 1, 1, T_max)
        real = padding_mask if padding_mask is not None else torch.ones(b, t, dtype=torch.bool, device=device)
        before = cache.num_real[:, None] if cache is not None else 0  # (B, 1): real tokens already cached
        positions = (before + real.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
        keys = real
        if cache is None:
            slots = torch.arange(t, device=device)  # (T,)
        elif cache.static:
            # Write position read on the device: same shapes every step, the mask covers all max_len slots.
            slots = cache.begin_static_step(t, device)  # (T,)
            cache.key_mask.index_copy_(1, slots, real)
            keys = cache.key_mask  # (B, T_max)
        else:
            offset = cache.length
            slots = torch.arange(offset, offset + t, device=device)  # (T,)
            cache.key_mask[:, offset : offset + t] = real
            keys = cache.key_mask[:, : offset + t]  # (B, T_total)
        if cache is not None:
            cache.num_real += real.sum(dim=1)
            cache.padded = cache.padded or padding_mask is not None
            if not (cache.padded or cache.static):
                return positions, None  # plain causal attention over the cached prefix
        q_idx = slots[:, None]  # (T, 1)
        k_idx = torch.arange(keys.shape[1], device=device)[None, :]  # (1, T_total)
        # Causal over real keys; a padded query sees itself so that no softmax row is empty.
        attn_mask = ((k_idx <= q_idx) & keys[:, None, :]) | (k_idx == q_idx)  # (B, T, T_total)
        return positions, attn_mask[:, None]  # (B, 1, T, T_total) broadcast over heads

    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        padding_mask: Tensor | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | None = None,
        seed: int | Sequence[int] | None = None,
        stop: Callable[[list[int]], bool] | None = None,
        streamer: Streamer | None = None,
        truncate: bool = False,
        as_lists: bool = False,
        fast: bool | None = None,
        check_every: int = 16,
        compile: bool | None = None,
    ) -> Tensor | list[list[int]]:
        """Continues ``input_ids`` (B, T); see :func:`formers.generation.causal_lm.generate` (same arguments).

        On CUDA this takes the static-cache, CUDA-graph path by default (``fast=False`` turns it off); the static
        cache, graphs and compiled steps (a single row on CUDA compiles its step by default, ``compile``) are kept on
        the model per batch size and capacity bucket, so repeated calls are fast (the first one per shape captures,
        and compiles).
        """
        return generate(
            self, input_ids, max_new_tokens, padding_mask=padding_mask, do_sample=do_sample,
            temperature=temperature, top_k=top_k, top_p=top_p, eos_id=eos_id, seed=seed, stop=stop,
            streamer=streamer, truncate=truncate, as_lists=as_lists, fast=fast, check_every=check_every,
            compile=compile,
        )


@register_model(GPT)
def gpt2() -> GPTConfig:
    """GPT-2 124M: 12 layers, 12 heads, 768 wide, 1024 positions, BPE vocabulary of 50257 (rows padded to 50304)."""
    return GPTConfig(vocab_multiple=64)


@register_model(GPT)
def gpt2_medium() -> GPTConfig:
    """GPT-2 medium (350M): 24 layers, 16 heads, 1024 wide."""
    return GPTConfig(num_layers=24, num_heads=16, embed_dim=1024, vocab_multiple=64)


@register_model(GPT)
def gpt2_large() -> GPTConfig:
    """GPT-2 large (774M): 36 layers, 20 heads, 1280 wide."""
    return GPTConfig(num_layers=36, num_heads=20, embed_dim=1280, vocab_multiple=64)


@register_model(GPT)
def gpt2_xl() -> GPTConfig:
    """GPT-2 XL (1.5B): 48 layers, 25 heads, 1600 wide."""
    return GPTConfig(num_layers=48, num_heads=25, embed_dim=1600, vocab_multiple=64)


@register_model(GPT)
def gpt_shakespeare_char() -> GPTConfig:
    """nanoGPT's Shakespeare char model: 6 layers, 6 heads, 384 wide, block 256, dropout 0.2, no biases.

    ``vocab_size`` (65 for tiny Shakespeare) is set from the character tokenizer; there is no end token.
    """
    return GPTConfig(
        vocab_size=65, max_seq_len=256, embed_dim=384, num_layers=6, num_heads=6, dropout=0.2, attn_dropout=0.2,
        bias=False, eos_id=None,
    )


@register_model(GPT)
def gpt_mini() -> GPTConfig:
    """CPU-sized: 4 layers, 4 heads, 128 wide, 256 positions (GPT-2 BPE vocabulary unless overridden)."""
    return GPTConfig(max_seq_len=256, embed_dim=128, num_layers=4, num_heads=4)
