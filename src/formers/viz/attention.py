"""Attention pictures: token-by-token grids, heat maps over images, Swin windows and DETR's object queries.

Every function takes plain tensors (the weights recorded by :mod:`formers.inference.attention`, already reduced to
what is drawn) and writes one PNG, atomically, with matplotlib's object API and the Agg canvas (no pyplot, no global
backend switch). :func:`attention_rollout` (Abnar & Zuidema 2020) and :func:`window_attention_map` turn raw weights
into the maps drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _check_matrix(weights: Tensor, rows: Sequence[str], cols: Sequence[str], name: str) -> None:
    if weights.dim() != 2 or weights.shape != (len(rows), len(cols)):
        raise ValueError(f"{name} must be ({len(rows)}, {len(cols)}) to match the token labels, "
                         f"got {tuple(weights.shape)}")


def _matrix(ax: Any, weights: Tensor, rows: Sequence[str], cols: Sequence[str], labels: bool = True) -> Any:
    image = ax.imshow(weights.float().numpy(), cmap="viridis", vmin=0.0, aspect="auto", interpolation="nearest")
    if labels:
        ax.set_xticks(range(len(cols)), list(cols), rotation=90, fontsize=8)
        ax.set_yticks(range(len(rows)), list(rows), fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    return image


def plot_alignment(
    weights: Tensor, source_tokens: Sequence[str], target_tokens: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """A translation's cross-attention as a source x target alignment grid (Bahdanau et al. 2015, fig. 3).

    Args:
        weights: (T, S) attention of each target token (row) over the source tokens (columns).
        source_tokens: S labels of the columns.
        target_tokens: T labels of the rows.
        path: the PNG to write.
        title: figure title.

    Returns:
        ``path``.
    """
    _check_matrix(weights, target_tokens, source_tokens, "weights")
    s, t = len(source_tokens), len(target_tokens)
    fig = _figure(max(4.0, 1.2 + 0.35 * s), max(3.5, 1.2 + 0.3 * t))
    ax = fig.subplots()
    image = _matrix(ax, weights, target_tokens, source_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, fraction=0.04)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_heads(
    weights: Tensor,
    query_tokens: Sequence[str],
    key_tokens: Sequence[str],
    path: str | Path,
    title: str = "",
    head_names: Sequence[str] | None = None,
) -> Path:
    """Self-attention of one layer, one panel per head (rows: queries, columns: keys).

    Args:
        weights: (H, Tq, Tk); one head is one panel (pass ``weights[h:h+1]`` for a single head).
        query_tokens: Tq row labels.
        key_tokens: Tk column labels.
        path: the PNG to write.
        title: figure title.
        head_names: H panel titles (default ``head 0``, ``head 1``...).

    Returns:
        ``path``.
    """
    if weights.dim() != 3:
        raise ValueError(f"weights must be (heads, queries, keys), got {tuple(weights.shape)}")
    _check_matrix(weights[0], query_tokens, key_tokens, "weights[h]")
    heads = weights.shape[0]
    names = list(head_names) if head_names is not None else [f"head {h}" for h in range(heads)]
    if len(names) != heads:
        raise ValueError(f"head_names must name the {heads} heads, got {len(names)}")
    cols = min(heads, 4)
    rows = math.ceil(heads / cols)
    side = max(2.8, 0.8 + 0.25 * max(len(query_tokens), len(key_tokens)))
    fig = _figure(cols * side + 0.8, rows * side + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    labels = max(len(query_tokens), len(key_tokens)) <= 48  # past that the labels overlap: ticks off
    for h, ax in enumerate(axes):
        if h >= heads:
            ax.set_axis_off()
            continue
        _matrix(ax, weights[h], query_tokens, key_tokens, labels=labels)
        ax.set_title(names[h], fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def attention_rollout(weights: Sequence[Tensor], head_fusion: str = "mean") -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020, eq. 1): how much each input token flows into each output token.

    Each layer's weights are fused over heads, the residual connection is added as 0.5 A + 0.5 I (rows
    renormalised), and the layers are multiplied from the first up: R = A_L' ... A_1'.

    Args:
        weights: one (B, H, T, T) self-attention tensor per layer, first layer first.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.

    Returns:
        (B, T, T) float32: row i is output token i's mix of the input tokens (rows sum to 1).
    """
    if not weights:
        raise ValueError("attention_rollout needs the weights of at least one layer")
    fuse = {"mean": lambda w: w.mean(1), "max": lambda w: w.amax(1), "min": lambda w: w.amin(1)}
    if head_fusion not in fuse:
        raise ValueError(f"head_fusion must be one of {sorted(fuse)}, got {head_fusion!r}")
    rollout = None
    for w in weights:
        if w.dim() != 4 or w.shape[-1] != w.shape[-2]:
            raise ValueError(f"each layer's weights must be (B, H, T, T) self-attention, got {tuple(w.shape)}")
        a = fuse[head_fusion](w.float())  # (B, T, T)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1])
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout  # (B, T, T)
    return rollout


def _image_array(image: Tensor) -> np.ndarray:
    if image.dim() != 3 or image.shape[0] not in (1, 3) or image.dtype != torch.uint8:
        raise ValueError(f"image must be (C, H, W) uint8 with 1 or 3 channels, got {image.dtype} {tuple(image.shape)}")
    array = image.permute(1, 2, 0).cpu().numpy()  # (C, H, W) -> (H, W, C)
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def _upsample(heatmap: Tensor, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) map stretched over (H, W) pixels (bilinear), scaled to [0, 1]."""
    up = F.interpolate(heatmap.float()[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    up = up - up.min()
    return (up / up.max().clamp_min(1e-12)).numpy()


def _overlay(ax: Any, image: np.ndarray, heatmap: Tensor, alpha: float = 0.55) -> None:
    ax.imshow(image)
    ax.imshow(_upsample(heatmap, image.shape[:2]), cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_image_attention(image: Tensor, heatmap: Tensor, path: str | Path, title: str = "") -> Path:
    """A heat map over an image (e.g. the class token's attention rollout over the patch grid), beside the image.

    Args:
        image: (C, H, W) uint8 (1 or 3 channels).
        heatmap: (gh, gw) non-negative map laid over the whole image (stretched, bilinear, scaled to [0, 1]).
        path: the PNG to write.
        title: figure title.

    Returns:
        ``path``.
    """
    if heatmap.dim() != 2:
        raise ValueError(f"heatmap must be (gh, gw), got {tuple(heatmap.shape)}")
    array = _image_array(image)
    fig = _figure(8.0, 4.3)
    left, right = fig.subplots(1, 2)
    left.imshow(array)
    left.set_xticks([])
    left.set_yticks([])
    left.set_title("input")
    _overlay(right, array, heatmap)
    right.set_title("attention")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def window_attention_map(weights: Tensor, layout: dict[str, Any]) -> Tensor:
    """Swin window attention laid back onto its feature map: the attention each token receives inside its window.

    Args:
        weights: (nW, N, N) one image's windows (row-major over the padded, shifted map), heads already fused.
        layout: the record's ``extra``: ``window_size``, ``windows``, ``shift_size``, ``map_size``.

    Returns:
        (H, W) map: each token's mean attention from the queries of its window (the shift undone, padding cut).
    """
    wh, ww = layout["window_size"]
    nh, nw = layout["windows"]
    if weights.dim() != 3 or weights.shape != (nh * nw, wh * ww, wh * ww):
        raise ValueError(f"weights must be ({nh * nw}, {wh * ww}, {wh * ww}) for {nh}x{nw} windows of {wh}x{ww}, "
                         f"got {tuple(weights.shape)}")
    received = weights.float().mean(1)  # (nW, N): mean over the window's queries
    grid = received.view(nh, nw, wh, ww).permute(0, 2, 1, 3).reshape(nh * wh, nw * ww)  # (Hp, Wp)
    sh, sw = layout["shift_size"]
    grid = torch.roll(grid, shifts=(sh, sw), dims=(0, 1))  # undo the cyclic shift (-sh, -sw)
    h, w = layout["map_size"]
    return grid[:h, :w]


def plot_window_attention(
    image: Tensor, token_map: Tensor, layout: dict[str, Any], path: str | Path, title: str = ""
) -> Path:
    """A Swin block's window attention over the image, with its (shifted) window borders.

    Args:
        image: (C, H, W) uint8.
        token_map: (h, w) from :func:`window_attention_map`, the stage's feature map over the image.
        layout: the record's ``extra`` (``window_size``, ``windows``, ``shift_size``, ``map_size``).
        path: the PNG to write.
        title: figure title.

    Returns:
        ``path``.
    """
    array = _image_array(image)
    fig = _figure(5.0, 5.0)
    ax = fig.subplots()
    _overlay(ax, array, token_map)
    h, w = layout["map_size"]
    py, px = array.shape[0] / h, array.shape[1] / w  # image pixels per map token
    wh, ww = layout["window_size"]
    sh, sw = layout["shift_size"]
    nh, nw = layout["windows"]
    for i in range(nh + 1):  # window borders on the shifted grid, drawn where the shift puts them on the map
        y = (i * wh + sh) % (nh * wh) if sh else i * wh
        if 0 < y < h:
            ax.axhline(y * py - 0.5, color="white", linewidth=1)
    for j in range(nw + 1):
        x = (j * ww + sw) % (nw * ww) if sw else j * ww
        if 0 < x < w:
            ax.axvline(x * px - 0.5, color="white", linewidth=1)
    ax.set_title(title or f"windows {wh}x{ww}, shift {sh},{sw}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_object_attention(
    image: Tensor, heatmaps: Tensor, boxes: Tensor, captions: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """DETR's decoder cross-attention of each detected object's query over the image, with the object's box.

    Args:
        image: (C, H, W) uint8.
        heatmaps: (K, gh, gw): one query's attention over the feature cells per object.
        boxes: (K, 4) corners (x0, y0, x1, y1) in the image's pixels.
        captions: K panel titles (class and score).
        path: the PNG to write.
        title: figure title.

    Returns:
        ``path``.
    """
    k = heatmaps.shape[0]
    if heatmaps.dim() != 3 or boxes.shape != (k, 4) or len(captions) != k or k == 0:
        raise ValueError(f"heatmaps (K, gh, gw), boxes (K, 4) and K captions must agree (K >= 1), got "
                         f"{tuple(heatmaps.shape)}, {tuple(boxes.shape)} and {len(captions)}")
    array = _image_array(image)
    cols = min(k, 4)
    rows = math.ceil(k / cols)
    aspect = array.shape[0] / array.shape[1]
    fig = _figure(3.6 * cols, 3.6 * aspect * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= k:
            ax.set_axis_off()
            continue
        _overlay(ax, array, heatmaps[i])
        x0, y0, x1, y1 = boxes[i].tolist()
        colour = PALETTE[i % len(PALETTE)]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=2))
        ax.set_title(captions[i], fontsize=9, color=colour)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


__all__ = [
    "attention_rollout",
    "plot_alignment",
    "plot_heads",
    "plot_image_attention",
    "plot_object_attention",
    "plot_window_attention",
    "window_attention_map",
]
