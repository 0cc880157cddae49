"""A result's attention view: every layer's and head's attention weights with the labels of their queries and keys.

The weights come from :func:`formers.inference.attention.attention_maps`, which recomputes them through the readable
attention path on demand, so serving stays on the fused kernels. Each record becomes::

    {"name": "decoder.layers.0.cross_attn", "kind": "cross", "heads": H,
     "queries": [labels of the Tq rows], "keys": [labels of the Tk columns],
     "weights": H x Tq x Tk numbers, rounded to 4 decimals}

of the batch's first row. Labels name tokens (``"▁the"``), image patches (``"3,5"``) or object queries; where the
caller's labels do not fit a record's length, its rows and columns are numbered instead. A result carries at most
``max_values`` weights: longer inputs keep the attention of their last tokens (``"trimmed"`` says how many were
left out).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from formers.inference.attention import AttentionRecord, attention_maps

Labeller = Callable[[AttentionRecord, int, int], tuple[Sequence[str] | None, Sequence[str] | None]]
"""(record, Tq, Tk) -> (query labels, key labels), either None where the caller has none for that record."""


def token_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """A readable label per token id: its text, else its vocabulary entry (a byte-level piece), else the id."""
    labels = []
    for i in ids:
        text = tokenizer.decode([int(i)])
        if not text or "\ufffd" in text:
            to_token = getattr(tokenizer, "id_to_token", None)
            text = to_token(int(i)) if to_token is not None else None
        labels.append(text if text else f"#{int(i)}")
    return labels


def grid_labels(rows: int, cols: int, prefix: Sequence[str] = ()) -> list[str]:
    """Labels of image positions in row-major order (``"r,c"``), after ``prefix`` tokens (``[CLS]``)."""
    return [*prefix, *(f"{r},{c}" for r in range(rows) for c in range(cols))]


def attention_view(
    model: nn.Module, args: Sequence[Any], labeller: Labeller, max_values: int, kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The attention of ``model(*args, **kwargs)``, ready for the page.

    Returns:
        ``{"layers": [record, ...], "trimmed": n}``, or ``{"layers": [], "error": message}`` when the weights
        cannot be recorded for this model (the result itself is still served).
    """
    try:
        _, records = attention_maps(model, *args, **(kwargs or {}))
    except (NotImplementedError, ValueError, TypeError, RuntimeError) as e:
        return {"layers": [], "error": f"attention maps unavailable for this model: {e}"}
    return records_to_view(records, labeller, max_values)


def image_labels(record: AttentionRecord, tq: int, tk: int) -> tuple[list[str] | None, list[str] | None]:
    """Labels of image tokens from a record's geometry: ``[CLS]`` prefix tokens then ``r,c`` grid positions (ViT,
    DETR's encoder and the keys of its cross-attention), or the positions inside Swin's first window."""
    extra = record.extra
    if "window_size" in extra:
        inside = grid_labels(*extra["window_size"])
        return inside, inside
    if "grid" not in extra:
        return None, None
    gh, gw = extra["grid"]
    prefix = int(extra.get("prefix_tokens", 0))
    labels = grid_labels(gh, gw, ["[CLS]", "[DIST]"][:prefix] + [f"[{i}]" for i in range(2, prefix)])
    return (labels if tq == len(labels) else None), (labels if tk == len(labels) else None)


def records_to_view(records: Sequence[AttentionRecord], labeller: Labeller, max_values: int) -> dict[str, Any]:
    """Turns attention records (``name``, ``kind``, ``weights`` (B, H, Tq, Tk), ``extra``) into the view's JSON."""
    if not records:
        return {"layers": [], "error": "the model recorded no attention"}
    cells = sum(r.weights.shape[1] * r.weights.shape[2] * r.weights.shape[3] for r in records)
    scale = min(1.0, math.sqrt(max_values / max(cells, 1)))  # both sides cut by the same factor
    layers, trimmed = [], 0
    for record in records:
        weights = record.weights[0].float()  # (H, Tq, Tk) of the first row
        heads, tq, tk = weights.shape
        queries, keys = labeller(record, tq, tk)
        queries = list(queries) if queries is not None and len(queries) == tq else [str(i) for i in range(tq)]
        keys = list(keys) if keys is not None and len(keys) == tk else [str(i) for i in range(tk)]
        keep_q, keep_k = max(1, int(tq * scale)), max(1, int(tk * scale))
        if keep_q < tq or keep_k < tk:
            trimmed = max(trimmed, tq - keep_q, tk - keep_k)
            weights, queries, keys = weights[:, -keep_q:, -keep_k:], queries[-keep_q:], keys[-keep_k:]
        layer = {
            "name": str(record.name),
            "kind": record.kind,
            "heads": heads,
            "queries": queries,
            "keys": keys,
            "weights": weights.double().mul(1e4).round().div(1e4).tolist(),
        }
        extra = record.extra
        if "grid" in extra and "window_size" not in extra and len(keys) == tk:  # keys lie over the image
            layer["grid"] = [int(v) for v in extra["grid"]]
            layer["prefix_tokens"] = int(extra.get("prefix_tokens", 0))
        layers.append(layer)
    return {"layers": layers, "trimmed": trimmed}
