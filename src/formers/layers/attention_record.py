"""The low-level attention recorder: what :func:`~formers.layers.attention.scaled_dot_product_attention` reports
while someone listens, and the attention weights recomputed from it through the readable equation.

The fused kernels never materialise the weights softmax(Q K^T * scale + bias) (that is why they are fast), so a
listener gets the call's inputs and output instead, and :func:`attention_weights` writes the equation out in float32.
Nothing is computed while no listener is registered: the attention function checks one module-level list.

Listeners see every call on every thread; the user-facing :func:`formers.inference.attention.record_attention`
keeps the calls of one model's modules on the recording thread. Calls inside a replayed CUDA graph run no Python and
are not seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class AttentionCall:
    """The inputs and output of one :func:`~formers.layers.attention.scaled_dot_product_attention` call.

    Attributes:
        q: queries (B, H, Tq, Dh).
        k: keys (B, H, Tk, Dh).
        v: values (B, H, Tk, Dv).
        attn_mask: boolean broadcastable to (B, H, Tq, Tk), True = may attend; or None.
        attn_bias: additive bias broadcastable to (B, H, Tq, Tk); or None.
        is_causal: causal attention aligned to the end (query i sees keys j <= i + Tk - Tq).
        scale: the multiplier of Q K^T.
        dropout_p: dropout applied to the weights by the call (the recomputed weights are the ones before it).
        output: the call's result (B, H, Tq, Dv), computed by whichever path (fused or math) the caller chose.
    """

    q: Tensor
    k: Tensor
    v: Tensor
    attn_mask: Tensor | None
    attn_bias: Tensor | None
    is_causal: bool
    scale: float
    dropout_p: float
    output: Tensor


Listener = Callable[[AttentionCall], None]

# The registered listeners; scaled_dot_product_attention reports to them only while this list is not empty.
LISTENERS: list[Listener] = []


@contextmanager
def listen_to_attention(listener: Listener) -> Iterator[None]:
    """Calls ``listener(call)`` after every attention computation inside the block (nested blocks stack)."""
    LISTENERS.append(listener)
    try:
        yield
    finally:
        LISTENERS.remove(listener)


def report(call: AttentionCall) -> None:
    """Hands ``call`` to every registered listener (called by the attention function)."""
    for listener in list(LISTENERS):
        listener(call)


def attention_weights(
    q: Tensor,
    k: Tensor,
    attn_mask: Tensor | None = None,
    attn_bias: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """softmax(Q K^T * scale + bias) with masked keys at 0, in float32 (Vaswani et al. 2017, eq. 1).

    The same equation as the ``"math"`` path of ``scaled_dot_product_attention``, written out in float32 whatever
    the input dtype. A query row that may attend to no key (every key masked) gets all zeros, as no distribution
    exists for it.

    Args:
        q: queries (B, H, Tq, Dh).
        k: keys (B, H, Tk, Dh).
        attn_mask: boolean broadcastable to (B, H, Tq, Tk), True = may attend.
        attn_bias: additive bias broadcastable to (B, H, Tq, Tk).
        is_causal: query i sees keys j <= i + (Tk - Tq) (aligned to the end, as with a KV cache).
        scale: multiplier of Q K^T; default 1/sqrt(Dh).

    Returns:
        (B, H, Tq, Tk) float32 weights; each row sums to 1 (or is all 0).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    tq, tk = q.shape[-2], k.shape[-2]
    scores = torch.matmul(q.float(), k.float().transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    if attn_bias is not None:
        scores = scores + attn_bias.float()
    if is_causal:
        causal = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(diagonal=tk - tq)  # (Tq, Tk)
        attn_mask = causal if attn_mask is None else attn_mask & causal
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, H, Tq, Tk); NaN where a whole row is -inf
    return torch.nan_to_num(weights, nan=0.0)


__all__ = ["LISTENERS", "AttentionCall", "Listener", "attention_weights", "listen_to_attention", "report"]
