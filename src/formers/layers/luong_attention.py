"""Luong's global attention with the "general" score, for recurrent decoders.

Luong, Pham and Manning 2015, "Effective Approaches to Attention-based Neural Machine Translation"
(arXiv:1508.04025), sec. 3.1: for the decoder's top state h_t and the encoder states h̄_s,

    score(h_t, h̄_s) = h_t^T W_a h̄_s                     (eq. 8, "general")
    a_t(s)          = softmax_s(score(h_t, h̄_s))          (eq. 7)
    c_t             = sum_s a_t(s) h̄_s
    h̃_t             = tanh(W_c [c_t; h_t])                (eq. 5)

The score is a dot product of h_t with the projected keys W_a h̄_s, so the weighted sum runs through the shared
:func:`~formers.layers.attention.scaled_dot_product_attention` (one head, scale 1: Luong's score is unscaled), with
its fused path and its readable ``math`` path. The keys depend on the source only: they are projected once per
sentence (:meth:`LuongAttention.project_keys`) and reused at every decoding step, as the Transformer's cross-attention
keys are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from formers.layers.attention import Backend, scaled_dot_product_attention


class LuongAttention(nn.Module):
    """Global "general" attention and the attentional hidden state h̃_t of Luong et al. 2015 (eqs. 5, 7, 8).

    Args:
        query_dim: width H of the decoder states h_t.
        memory_dim: width Hm of the encoder states h̄_s.
        out_dim: width D of the attentional vector h̃_t (the output projection's input; the embedding width
            when the output layer is tied to the target embedding).
        backend: ``"sdpa"`` (fused kernels) or ``"math"`` (the equation written out); changeable after construction.
    """

    def __init__(self, query_dim: int, memory_dim: int, out_dim: int, backend: Backend = "sdpa") -> None:
        super().__init__()
        self.key_proj = nn.Linear(memory_dim, query_dim, bias=False)  # W_a (eq. 8)
        self.out_proj = nn.Linear(memory_dim + query_dim, out_dim, bias=False)  # W_c (eq. 5)
        self.backend: Backend = backend

    def project_keys(self, memory: Tensor) -> Tensor:
        """Encoder states (B, S, Hm) -> keys W_a h̄_s as one head (B, 1, S, H); computed once per source."""
        return self.key_proj(memory)[:, None]  # (B, S, H) -> (B, 1, S, H)

    def forward(self, query: Tensor, memory: Tensor, keys: Tensor, attn_mask: Tensor) -> Tensor:
        """Attends decoder states to the encoder states and returns h̃_t.

        Args:
            query: decoder top-layer states h_t (B, T, H).
            memory: encoder states h̄_s (B, S, Hm), the values.
            keys: ``project_keys(memory)`` (B, 1, S, H).
            attn_mask: boolean (B, 1, 1, S), True = a real source token.

        Returns:
            h̃_t = tanh(W_c [c_t; h_t]) (B, T, D).
        """
        q = query[:, None]  # (B, T, H) -> (B, 1, T, H)
        v = memory[:, None].to(q.dtype)  # (B, S, Hm) -> (B, 1, S, Hm)
        context = scaled_dot_product_attention(q, keys.to(q.dtype), v, attn_mask=attn_mask, scale=1.0,
                                               backend=self.backend)
        context = context[:, 0]  # (B, 1, T, Hm) -> (B, T, Hm)
        return torch.tanh(self.out_proj(torch.cat([context, query], dim=-1)))  # [c_t; h_t] (B, T, Hm + H) -> (B, T, D)
