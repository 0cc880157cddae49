"""Boolean attention masks (True = may attend) built from padding masks (True = real token), and their additive form."""

from __future__ import annotations

import torch
from torch import Tensor


def padding_to_attn_mask(padding_mask: Tensor) -> Tensor:
    """Key padding mask (B, Tk) -> attention mask (B, 1, 1, Tk) broadcasting over heads and queries."""
    return padding_mask[:, None, None, :]  # (B, Tk) -> (B, 1, 1, Tk)


def causal_mask(tq: int, tk: int | None = None, device: torch.device | None = None) -> Tensor:
    """Lower-triangular mask (Tq, Tk), aligned to the end: query i sees keys j <= i + Tk - Tq."""
    tk = tq if tk is None else tk
    return torch.ones(tq, tk, dtype=torch.bool, device=device).tril(diagonal=tk - tq)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of broadcastable boolean masks, ignoring ``None``; ``None`` if all are ``None``."""
    out: Tensor | None = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out


def mask_to_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean mask -> the additive bias attention applies for it (0 where True, -inf where False), in ``dtype``.

    Decoding steps make it once for every layer: each layer's attention would otherwise convert the boolean mask again
    (one kernel per layer, in steps where small kernels set the speed).
    """
    return torch.where(mask, 0.0, float("-inf")).to(dtype)
