"""Relative position bias of window attention (Swin, Liu et al. 2021, https://arxiv.org/abs/2103.14030, sec. 3.2).

Each head learns one scalar per relative offset (dy, dx) in [-(wh - 1), wh - 1] x [-(ww - 1), ww - 1], a table
of (2wh - 1)(2ww - 1) rows; the (N, N) bias between the N = wh * ww tokens of a window is gathered from it with a
fixed index. The table layout and index are those of the reference implementation, ``timm``
(``relative_position_bias_table``) and Hugging Face, so tables load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def relative_position_index(window_size: tuple[int, int]) -> Tensor:
    """Row of the bias table for every (query, key) token pair of a window.

    Args:
        window_size: (wh, ww).

    Returns:
        Long (N, N), N = wh * ww, tokens row-major: (dy + wh - 1) * (2ww - 1) + (dx + ww - 1).
    """
    wh, ww = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N) offsets query - key
    return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)  # (N, N)


class WindowRelativePositionBias(nn.Module):
    """Learned per-head relative position bias of a window, (H, N, N), for attention's ``attn_bias``.

    Args:
        num_heads: H.
        window_size: (wh, ww).

    The index is a non-persistent buffer (state dicts hold only ``table``); it is padded so that the bias rows
    have a stride that is a multiple of 8, which lets the fused attention kernels read it without a copy.
    """

    def __init__(self, num_heads: int, window_size: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = (int(window_size[0]), int(window_size[1]))
        wh, ww = self.window_size
        self.num_tokens = n = wh * ww
        self.padded = -(-n // 8) * 8  # row length of the gathered bias (N rounded up to a multiple of 8)
        self.table = nn.Parameter(torch.empty((2 * wh - 1) * (2 * ww - 1), num_heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        index = torch.zeros(n, self.padded, dtype=torch.long)
        index[:, :n] = relative_position_index(self.window_size)
        self.register_buffer("index", index.view(-1), persistent=False)  # (N * padded,)

    def forward(
        self, dtype: torch.dtype | None = None, window_mask: Tensor | None = None, batch_size: int = 1
    ) -> Tensor:
        """The attention bias of every window, ready for ``attn_bias``.

        Args:
            dtype: dtype of the bias (that of the attention scores); default the table's.
            window_mask: optional boolean (nW, N, N), True = may attend (shifted windows); masked pairs get -inf.
            batch_size: images B, when ``window_mask`` is given (windows are batched image-major, as
                :func:`formers.layers.windows.window_partition` lays them out).

        Returns:
            (1, H, N, N) without a mask, else (B * nW, H, N, N); rows padded in memory to a multiple of 8.
        """
        h, n = self.num_heads, self.num_tokens
        table = self.table if dtype is None else self.table.to(dtype)
        bias = table.t().index_select(1, self.index).view(h, n, self.padded)  # (H, N, Np)
        if window_mask is None:
            return bias[None, :, :, :n]  # (1, H, N, N)
        nw = window_mask.shape[0]
        keep = F.pad(window_mask, (0, self.padded - n), value=True)  # (nW, N, Np)
        bias = bias[None].masked_fill(~keep[:, None], float("-inf"))  # (nW, H, N, Np)
        bias = bias.expand(batch_size, nw, h, n, self.padded).reshape(batch_size * nw, h, n, self.padded)
        return bias[..., :n]  # (B * nW, H, N, N)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, window_size={self.window_size}"
