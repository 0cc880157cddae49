"""Scaled dot-product attention (one function, two paths) and multi-head attention with a KV cache.

``scaled_dot_product_attention`` computes softmax(Q K^T / sqrt(d) + bias) V (Vaswani et al. 2017, eq. 1).
The ``"sdpa"`` path calls ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
kernels on GPU); the ``"math"`` path writes the equation out and is the reference the tests compare against.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from formers.layers import attention_record
from formers.layers.decode_attention import (
    decode_attention,
    decode_kernel_applies,
    lock_table,
    verify_decode_kernel,
)
from formers.layers.masks import causal_mask

Backend = Literal["sdpa", "math"]

# Kernel priority of the "sdpa" path for CUDA half-precision inputs without a mask or bias. cuDNN's fused attention
# uses Hopper's tensor cores (wgmma) where FlashAttention-2 does not; PyTorch's default order puts it last. On an
# H200 (benchmarks/sdpa_kernels.py) it ran forward + backward 1.50x faster for GPT-2 (causal, T=1024) and 1.56x for
# ViT-B (T=197), but 0.62x with an additive bias (Swin), so masked/biased calls keep PyTorch's order. Inside the
# compiled GPT-2 training step it is picked as well: 34.4 ms per step against 36.2 ms with PyTorch's order, and the same
# as calling the cuDNN kernel directly (benchmarks/gpt2_speed.py --attention-variants). Kernels that cannot take the
# inputs (older GPUs, head sizes) are skipped in order, down to the math kernel.
SDPA_PRIORITY: list[SDPBackend] = [
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.MATH,
]


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    attn_bias: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    backend: Backend = "sdpa",
) -> Tensor:
    """Attention over heads.

    Args:
        q: queries (B, H, Tq, Dh).
        k: keys (B, H, Tk, Dh).
        v: values (B, H, Tk, Dv).
        attn_mask: boolean, broadcastable to (B, H, Tq, Tk); True = may attend.
        attn_bias: additive float bias broadcastable to (B, H, Tq, Tk) (relative positions, ALiBi, ...).
        is_causal: query i attends to keys j <= i + (Tk - Tq) (aligned to the end, as with a KV cache).
        dropout_p: dropout on the attention weights (pass 0.0 in eval).
        scale: multiplier of Q K^T; default 1/sqrt(Dh).
        backend: ``"sdpa"`` (fused kernels) or ``"math"`` (readable reference).

    Returns:
        (B, H, Tq, Dv).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    out = _attend(q, k, v, attn_mask, attn_bias, is_causal, dropout_p, scale, backend)
    if attention_record.LISTENERS:  # someone records attention maps (formers.inference.attention); else no cost
        attention_record.report(attention_record.AttentionCall(
            q, k, v, attn_mask, attn_bias, is_causal, scale, dropout_p, out
        ))
    return out


def _attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None,
    attn_bias: Tensor | None,
    is_causal: bool,
    dropout_p: float,
    scale: float,
    backend: Backend,
) -> Tensor:
    """The two paths of :func:`scaled_dot_product_attention` (same arguments, ``scale`` given)."""
    tq, tk = q.shape[-2], k.shape[-2]
    if is_causal and (tq != tk or attn_mask is not None or attn_bias is not None or backend == "math"):
        # Fold causality into the boolean mask; aligned to the end so cached decoding works (Tq < Tk).
        causal = causal_mask(tq, tk, q.device)
        attn_mask = causal if attn_mask is None else attn_mask & causal
        is_causal = False
    if backend == "math":
        scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
        if attn_bias is not None:
            scores = scores + attn_bias
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        if dropout_p > 0.0:
            weights = F.dropout(weights, p=dropout_p)
        return torch.matmul(weights, v)  # (B, H, Tq, Dv)
    if backend != "sdpa":
        raise ValueError(f"backend must be 'sdpa' or 'math', got {backend!r}")
    mask: Tensor | None = attn_mask
    if attn_bias is not None:
        mask = attn_bias.to(q.dtype)
        if attn_mask is not None:
            mask = mask.masked_fill(~attn_mask, float("-inf"))
    if mask is None and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16) and SDPA_PRIORITY:
        with sdpa_kernel(SDPA_PRIORITY, set_priority=True):
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
            )
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)


class KVCache:
    """Pre-allocated key/value buffer of one attention layer for incremental decoding.

    Keys and values are written in place at ``length`` and views of the filled part are returned, so decoding
    allocates nothing per step. ``reorder`` selects rows (beam search).

    With ``static=True`` the write position lives on the device only (``filled``, a 0-d long tensor; ``length``
    stays 0) and ``append`` returns the whole buffers (B, H, T_max, Dh): every decoding step then has the same
    shapes and reads no host state, so it can be captured in a CUDA graph or compiled once. The caller masks the
    unfilled slots (slots >= ``filled``) and keeps the total within ``max_len``, which cannot be checked without
    reading the device.

    Args:
        batch_size: rows B.
        num_heads: heads H.
        max_len: capacity T_max in positions.
        head_dim: Dh.
        static: fixed-shape mode (see above).
    """

    def __init__(
        self,
        batch_size: int,
        num_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
        static: bool = False,
        filled: Tensor | None = None,
        kv: Tensor | None = None,
        origin: Tensor | None = None,
    ) -> None:
        # keys and values side by side, so that a fused projection's output lands in one copy
        shape = (2, batch_size, num_heads, max_len, head_dim)
        if kv is None:
            kv = torch.zeros(shape, dtype=dtype, device=device)
        elif tuple(kv.shape) != shape:  # a view of a state's buffer for all its layers (Transformer.init_state)
            raise ValueError(f"kv must have shape {shape}, got {tuple(kv.shape)}")
        self.kv = kv  # (2, B, H, T_max, Dh)
        self.k, self.v = kv[0], kv[1]
        self.length = 0
        self.static = static
        # static mode's write position (0-d long; the layers of one state may share it, see LayerCaches)
        self.filled = torch.zeros((), dtype=torch.long, device=device) if filled is None else filled
        if static and torch.device(device).type == "cuda":
            verify_decode_kernel(device, dtype)  # once per device and dtype: may steps take the one kernel?
        self.window: int | None = None  # static mode: slots ``append`` returns (None: all); the caller knows they hold the filled ones
        # static mode, beam search: (B, T_max) long, the row whose buffer holds each row's slot, so that reordering
        # beams gathers this table instead of copying keys and values; a step writes its own row's slot (the state
        # sets origin[:, slot] = row, LayerCaches.begin_static_step). None: every row's own.
        self.origin = origin
        self.step_slots: Tensor | None = None  # static mode: slots this step writes, set for every layer at once
        # static mode on CUDA: the decoding kernel's count of finished parts per (row, head), zero between steps
        self.locks = lock_table(batch_size, num_heads, device, dtype) if static else None

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Writes new keys/values (B, H, T, Dh) after the cached ones.

        Returns:
            All keys/values so far (B, H, length, Dh), or the whole buffers (B, H, T_max, Dh) when static.
        """
        where = self.claim(k.shape[2])
        if isinstance(where, slice):
            self.k[:, :, where] = k
            self.v[:, :, where] = v
        else:
            self.k.index_copy_(2, where, k.to(self.k.dtype))
            self.v.index_copy_(2, where, v.to(self.v.dtype))
        return self._cached()

    def append_packed(self, kv: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`append` of keys and values stacked as (2, B, H, T, Dh), e.g. a view of a fused q/k/v projection's
        output: one copy instead of two (a kernel fewer per layer in every decoding step)."""
        where = self.claim(kv.shape[3])
        if isinstance(where, slice):
            self.kv[:, :, :, where] = kv
        else:
            self.kv.index_copy_(3, where, kv.to(self.kv.dtype))
        return self._cached()

    def claim(self, t: int) -> Tensor | slice:
        """Where ``t`` new positions go: slots read on the device (static, no host sync), else the slice after the
        cached ones."""
        if self.static:
            if self.step_slots is not None:  # counted once for every layer by the state (LayerCaches)
                return self.step_slots
            slots = self.filled + torch.arange(t, device=self.k.device)  # (T,)
            self.filled += t
            return slots
        if self.length + t > self.max_len:
            raise ValueError(f"KV cache overflow: {self.length} cached + {t} new positions > capacity {self.max_len}")
        self.length += t
        return slice(self.length - t, self.length)

    def _cached(self) -> tuple[Tensor, Tensor]:
        """The keys and values attention reads (B, H, :attr:`attended`, Dh), gathered through :attr:`origin`."""
        n = self.attended
        if self.origin is None:
            return self.k[:, :, :n], self.v[:, :, :n]
        slots = torch.arange(n, device=self.kv.device)[None, :]  # (1, n)
        kv = self.kv[:, self.origin[:, :n], :, slots]  # (B, n, 2, H, Dh): slot t of row r from row origin[r, t]
        return kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)

    @property
    def attended(self) -> int:
        """Slots attention reads: all of them, a static cache's window, or the filled ones."""
        return (self.window or self.max_len) if self.static else self.length

    def decode_step(
        self, q: Tensor, k: Tensor | None, v: Tensor | None, attn_bias: Tensor | None, scale: float | None
    ) -> Tensor:
        """A static cache's single-position step in one kernel
        (:func:`~formers.layers.decode_attention.decode_attention`): writes ``k``/``v`` (B, H, 1, Dh) and attends
        ``q`` (B, H, 1, Dh) over the cache; or ``k`` and ``v`` None and ``q`` (B, 3, H, Dh), the three packed.
        Returns (B, H, 1, Dh)."""
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        slot = self.claim(1)
        if k is not None:
            q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
        out = decode_attention(q, k, v, self.kv, slot, attn_bias, scale, self.attended, self.origin,
                               locks=self.locks)
        return out[:, :, None]  # (B, H, 1, Dh)

    def reset(self) -> None:
        """Empties the cache in place (buffers keep their addresses, as a captured CUDA graph needs)."""
        self.length = 0
        self.filled.zero_()

    def reorder(self, index: Tensor) -> None:
        """Keeps rows ``index`` (N,) of the batch, e.g. the surviving beams."""
        self.kv = self.kv.index_select(1, index)
        self.k, self.v = self.kv[0], self.kv[1]
        if self.locks is not None and self.locks.numel() != self.kv.shape[1] * self.kv.shape[2]:
            self.locks = lock_table(self.kv.shape[1], self.kv.shape[2], self.kv.device, self.kv.dtype)


class LayerCaches:
    """What every decoding state shares: one :class:`KVCache` per layer in ``self.caches``, read through the first."""

    caches: list[KVCache]

    @property
    def length(self) -> int:
        """Positions cached so far (padding included); 0 for a static state, which counts on the device."""
        return self.caches[0].length

    @property
    def max_len(self) -> int:
        """Capacity in slots."""
        return self.caches[0].max_len

    @property
    def static(self) -> bool:
        """Whether the caches are in fixed-shape mode."""
        return self.caches[0].static

    def reset(self) -> None:
        """Empties every cache in place, keeping its buffers' addresses (for reuse by a captured graph)."""
        for cache in self.caches:
            cache.reset()

    def begin_static_step(self, t: int, device: torch.device) -> Tensor:
        """Static state: the slots (T,) a step of ``t`` positions writes, handed to every layer's cache at once.

        Counting once per step rather than once per layer saves three kernels per layer in a decoding step, where
        small kernels set the speed. The caller runs the layers, then :meth:`end_static_step`.
        """
        slots = self.caches[0].filled + torch.arange(t, device=device)  # (T,) read on the device
        for cache in self.caches:
            cache.step_slots = slots
        origin = self.caches[0].origin  # one table for every layer (beam search reorders rows through it)
        if origin is not None:
            rows = torch.arange(origin.shape[0], device=device)[:, None].expand(-1, t)
            origin.index_copy_(1, slots, rows)  # the step's slots are each row's own
        return slots

    def end_static_step(self, t: int) -> None:
        """Advances the write position past the step's ``t`` positions (each distinct counter once)."""
        counters = {id(cache.filled): cache.filled for cache in self.caches}
        for cache in self.caches:
            cache.step_slots = None
        for filled in counters.values():
            filled += t


def uses_decode_kernel(
    x: Tensor, cache: KVCache | None, attn_mask: Tensor | None, attn_bias: Tensor | None, dropout_p: float,
    backend: Backend, head_dim: int, value_head_dim: int,
) -> bool:
    """Whether a self-attention step on ``x`` (B, T, D) runs :meth:`KVCache.decode_step`: one position on a static
    CUDA cache, the ``sdpa`` backend, a per-row bias or none (a boolean mask, per-head biases, dropout and attention
    recording take the general path)."""
    return (
        cache is not None
        and cache.static
        and _kernel_takes(attn_mask, attn_bias, dropout_p, backend)
        and decode_kernel_applies(x, head_dim, value_head_dim, cache.kv.dtype)
    )


def _kernel_takes(attn_mask: Tensor | None, attn_bias: Tensor | None, dropout_p: float, backend: Backend) -> bool:
    """What the decoding kernel takes beside its tensors: no boolean mask, a per-row bias or none, no dropout, the
    ``sdpa`` backend, no one recording attention."""
    return (
        attn_mask is None
        and (attn_bias is None or (attn_bias.dim() == 4 and attn_bias.shape[1] == attn_bias.shape[2] == 1))
        and dropout_p == 0.0
        and backend == "sdpa"
        and not attention_record.LISTENERS
    )


def uses_cross_kernel(
    x: Tensor, kv: tuple[Tensor, Tensor] | Tensor | None, attn_mask: Tensor | None, attn_bias: Tensor | None,
    dropout_p: float, backend: Backend, head_dim: int,
) -> bool:
    """Whether a cross-attention step on ``x`` (N, 1, D) over precomputed keys and values runs the decoding kernel's
    cross-attention form: ``kv`` stacked as one (2, B, H, S, Dh) tensor (N a multiple of B), otherwise as for
    :func:`uses_decode_kernel`."""
    return (
        isinstance(kv, Tensor)
        and kv.dim() == 5
        and x.shape[0] % kv.shape[1] == 0
        and _kernel_takes(attn_mask, attn_bias, dropout_p, backend)
        and decode_kernel_applies(x, head_dim, head_dim, kv.dtype)
    )


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query and key/value inputs (self- or cross-attention).

    Args:
        embed_dim: model width D (= query width).
        num_heads: H; ``embed_dim`` must be divisible by it.
        dropout: dropout on attention weights.
        bias: whether the q/k/v/out projections have biases.
        kv_dim: width of the key/value input when it differs from ``embed_dim`` (cross-attention).
        backend: attention backend (``"sdpa"`` or ``"math"``), changeable after construction.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kv_dim: int | None = None,
        backend: Backend = "sdpa",
    ) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        kv_dim = embed_dim if kv_dim is None else kv_dim
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.backend: Backend = backend
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, T, D) -> (B, H, T, Dh)

    def project_kv(self, key: Tensor, value: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Projects key/value inputs (B, Tk, Dkv) to heads (B, H, Tk, Dh); computed once for cross-attention."""
        value = key if value is None else value
        return self._split_heads(self.k_proj(key)), self._split_heads(self.v_proj(value))

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        attn_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        kv: tuple[Tensor, Tensor] | Tensor | None = None,
    ) -> Tensor:
        """Attends ``query`` (B, Tq, D) to ``key``/``value`` (B, Tk, Dkv); self-attention when ``key`` is None.

        Args:
            attn_mask: boolean (B or 1, H or 1, Tq, Tk), True = may attend; with a ``cache`` Tk counts
                the cached positions too.
            attn_bias: additive bias broadcastable to (B, H, Tq, Tk).
            is_causal: causal self-attention (aligned to the end when a cache holds earlier positions).
            cache: self-attention KV cache; the new keys/values are appended and attention covers all.
            kv: precomputed key/value heads from :meth:`project_kv` (cross-attention during decoding), or the two
                stacked (2, B, H, Tk, Dh): then a single-position step on CUDA runs in one kernel. Their batch
                may be a divisor B / G of the query's: then query rows ``[i * G, (i + 1) * G)`` all attend to row
                ``i`` of them (the G beams of a sentence: its memory is read once, not G times), and a mask or bias
                has the keys' batch.

        Returns:
            (B, Tq, D).
        """
        q = self._split_heads(self.q_proj(query))  # (B, H, Tq, Dh)
        dropout_p = self.dropout if self.training else 0.0
        if uses_cross_kernel(query, kv, attn_mask, attn_bias, dropout_p, self.backend, self.head_dim):
            out = decode_attention(q[:, :, 0], None, None, kv, None, attn_bias, self.head_dim**-0.5)  # (B, H, Dh)
            return self.out_proj(out.reshape(q.shape[0], 1, self.embed_dim))  # (B, 1, D)
        if kv is not None and kv[0].shape[0] != q.shape[0]:
            return self._grouped(q, kv, attn_mask, attn_bias)
        if kv is None and uses_decode_kernel(query, cache, attn_mask, attn_bias, dropout_p, self.backend,
                                             self.head_dim, self.head_dim):
            k, v = self.project_kv(query if key is None else key, value)  # (B, H, 1, Dh) each
            out = cache.decode_step(q, k, v, attn_bias, None)  # (B, H, 1, Dh)
            return self.out_proj(out.reshape(q.shape[0], 1, self.embed_dim))  # (B, 1, D)
        if kv is not None:
            k, v = kv
        else:
            k, v = self.project_kv(query if key is None else key, value)
            if cache is not None:
                k, v = cache.append(k, v)
        out = scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            attn_bias=attn_bias,
            is_causal=is_causal,
            dropout_p=dropout_p,
            backend=self.backend,
        )
        b, _, tq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, tq, self.embed_dim))  # (B, H, Tq, Dh) -> (B, Tq, D)

    def _grouped(
        self, q: Tensor, kv: tuple[Tensor, Tensor], attn_mask: Tensor | None, attn_bias: Tensor | None
    ) -> Tensor:
        """Queries (B, H, 1, Dh) in groups of G consecutive rows against keys/values of batch B / G: each group's
        rows become the query positions of one attention call over its keys (the same function, per query)."""
        k, v = kv
        b, h, tq, dh = q.shape
        groups = k.shape[0]
        if tq != 1 or b % groups:
            raise ValueError(f"grouped cross-attention needs single-position queries in whole groups: query batch "
                             f"{b} with {tq} positions against key batch {groups}")
        size = b // groups
        q = q.view(groups, size, h, dh).transpose(1, 2)  # (B/G, H, G, Dh)
        out = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, attn_bias=attn_bias,
                                           dropout_p=self.dropout if self.training else 0.0, backend=self.backend)
        return self.out_proj(out.transpose(1, 2).reshape(b, 1, self.embed_dim))  # (B/G, H, G, Dh) -> (B, 1, D)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection: one GEMM instead of three.

    The fused weight is laid out query-major (rows ``[q; k; v]``, each head-major inside), the layout of
    GPT-2's ``c_attn``, timm's ViT/Swin ``qkv`` and Hugging Face's split ``query/key/value`` stacked. Query/key
    heads and value heads may have different widths (TNT's inner attention, EfficientFormer's 3D attention).

    Args:
        embed_dim: input and output width D.
        num_heads: H.
        dropout: dropout on attention weights.
        bias: whether the projections have biases.
        head_dim: query/key width per head; default ``embed_dim // num_heads`` (then D must divide by H).
        value_head_dim: value width per head; default ``head_dim``.
        scale: multiplier of Q K^T; default ``head_dim ** -0.5``.
        backend: attention backend (``"sdpa"`` or ``"math"``), changeable after construction.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        head_dim: int | None = None,
        value_head_dim: int | None = None,
        scale: float | None = None,
        backend: Backend = "sdpa",
    ) -> None:
        super().__init__()
        if head_dim is None:
            if embed_dim % num_heads != 0:
                raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
            head_dim = embed_dim // num_heads
        value_head_dim = head_dim if value_head_dim is None else value_head_dim
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.value_head_dim = value_head_dim
        self.scale = head_dim**-0.5 if scale is None else scale
        self.dropout = dropout
        self.backend: Backend = backend
        self.qkv = nn.Linear(embed_dim, num_heads * (2 * head_dim + value_head_dim), bias=bias)
        self.out_proj = nn.Linear(num_heads * value_head_dim, embed_dim, bias=bias)

    def forward(
        self,
        x: Tensor,
        *,
        attn_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Self-attention over ``x`` (B, T, D).

        Args:
            attn_mask: boolean broadcastable to (B, H, T, Tk), True = may attend (Tk counts cached positions).
            attn_bias: additive bias broadcastable to (B, H, T, Tk) (relative position bias, attention biases).
            is_causal: causal attention (aligned to the end when a cache holds earlier positions).
            cache: KV cache; the new keys/values are appended and attention covers all.

        Returns:
            (B, T, D).
        """
        b, t, _ = x.shape
        h, dh, dv = self.num_heads, self.head_dim, self.value_head_dim
        dropout_p = self.dropout if self.training else 0.0
        if uses_decode_kernel(x, cache, attn_mask, attn_bias, dropout_p, self.backend, dh, dv):
            qkv = self.qkv(x).view(b, 3, h, dh)  # one buffer: compiled, no copy per q, k and v
            return self.out_proj(cache.decode_step(qkv, None, None, attn_bias, self.scale).reshape(b, 1, h * dh))
        if cache is not None and dh == dv:  # decoding: keys and values reach the cache in one copy
            qkv = self.qkv(x).view(b, t, 3, h, dh)  # (B, T, 3, H, Dh)
            q = qkv[:, :, 0].transpose(1, 2)  # (B, H, T, Dh)
            k, v = cache.append_packed(qkv[:, :, 1:].permute(2, 0, 3, 1, 4))  # (2, B, H, T, Dh) in
        else:
            q, k, v = self.qkv(x).split([h * dh, h * dh, h * dv], dim=-1)  # (B, T, 3 x H*d)
            q = q.view(b, t, h, dh).transpose(1, 2)  # (B, H, T, Dh)
            k = k.view(b, t, h, dh).transpose(1, 2)  # (B, H, T, Dh)
            v = v.view(b, t, h, dv).transpose(1, 2)  # (B, H, T, Dv)
            if cache is not None:
                k, v = cache.append(k, v)
        out = scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, attn_bias=attn_bias, is_causal=is_causal,
            dropout_p=dropout_p, scale=self.scale, backend=self.backend,
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, t, h * dv))  # (B, H, T, Dv) -> (B, T, H*Dv)
