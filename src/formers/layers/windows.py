"""Window attention geometry of the Swin Transformer (Liu et al. 2021, https://arxiv.org/abs/2103.14030, sec. 3.2).

A (B, H, W, C) feature map is cut into non-overlapping wh x ww windows and attention runs inside each window.
Every other block first rolls the map by (-sh, -sw) (the *cyclic shift*) so that the new windows straddle the old
window borders; the tokens that the roll brought together from opposite edges must not attend to each other, which
:func:`shifted_window_mask` encodes. Layout and mask follow the reference implementation (microsoft/Swin-Transformer),
``timm`` and Hugging Face ``transformers``: windows are ordered row-major over the map, tokens row-major inside a
window, and the map is padded at the bottom/right to whole windows before partitioning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def window_partition(x: Tensor, window_size: tuple[int, int]) -> Tensor:
    """Cuts a feature map into windows.

    Args:
        x: (B, H, W, C) with H and W multiples of the window sides.
        window_size: (wh, ww).

    Returns:
        (B * nW, wh * ww, C), nW = (H / wh) * (W / ww) windows per image, row-major.
    """
    b, h, w, c = x.shape
    wh, ww = window_size
    x = x.view(b, h // wh, wh, w // ww, ww, c)  # (B, H/wh, wh, W/ww, ww, C)
    return x.transpose(2, 3).reshape(-1, wh * ww, c)  # (B, H/wh, W/ww, wh, ww, C) -> (B*nW, wh*ww, C)


def window_reverse(windows: Tensor, window_size: tuple[int, int], height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nW, wh * ww, C) windows -> (B, H, W, C) map."""
    c = windows.shape[-1]
    wh, ww = window_size
    x = windows.view(-1, height // wh, width // ww, wh, ww, c)  # (B, H/wh, W/ww, wh, ww, C)
    return x.transpose(2, 3).reshape(-1, height, width, c)  # (B, H/wh, wh, W/ww, ww, C) -> (B, H, W, C)


def pad_to_windows(x: Tensor, window_size: tuple[int, int]) -> Tensor:
    """Zero-pads a (B, H, W, C) map at the bottom and right to whole windows (a no-op when already whole)."""
    _, h, w, _ = x.shape
    pad_h, pad_w = -h % window_size[0], -w % window_size[1]
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # (B, H + pad_h, W + pad_w, C)


def cyclic_shift(x: Tensor, shift_size: tuple[int, int], reverse: bool = False) -> Tensor:
    """Rolls a (B, H, W, C) map by (-sh, -sw) (towards the top-left), or back with ``reverse``."""
    sign = 1 if reverse else -1
    return torch.roll(x, shifts=(sign * shift_size[0], sign * shift_size[1]), dims=(1, 2))


def shifted_window_mask(
    height: int,
    width: int,
    window_size: tuple[int, int],
    shift_size: tuple[int, int],
    device: torch.device | str | None = None,
) -> Tensor:
    """Which tokens of a shifted window may attend to which (SW-MSA).

    After the cyclic shift each axis of the (padded) map holds three regions, [0, L - w), [L - w, L - s) and
    [L - s, L); tokens attend only within their own region pair, i.e. to tokens that were neighbours before the
    roll. Windows that the roll did not touch are all True.

    Args:
        height: padded map height H (a multiple of ``window_size[0]``).
        width: padded map width W (a multiple of ``window_size[1]``).
        window_size: (wh, ww).
        shift_size: (sh, sw), each in [0, w).
        device: where to build the mask.

    Returns:
        Boolean (nW, N, N), N = wh * ww; True = may attend.
    """
    if height % window_size[0] or width % window_size[1]:
        raise ValueError(f"map size {height}x{width} must be a multiple of the window size {window_size}")
    regions = []
    for length, w, s in ((height, window_size[0], shift_size[0]), (width, window_size[1], shift_size[1])):
        idx = torch.arange(length, device=device)
        regions.append((idx >= length - w).long() + (idx >= length - s).long())  # (L,) region 0, 1 or 2
    region = regions[0][:, None] * 3 + regions[1][None, :]  # (H, W) one of 9 region ids
    windows = window_partition(region[None, :, :, None], window_size)[..., 0]  # (nW, N)
    return windows[:, :, None] == windows[:, None, :]  # (nW, N, N)
