"""Padded lengths for bucketed batches: variable-length text padded up to a few lengths, so compiled steps (and
CUDA graphs) see few shapes while every token is kept."""

from __future__ import annotations


def bucket_length(n: int, multiple: int, cap: int | None = None) -> int:
    """``n`` rounded up to a multiple of ``multiple``, but not above ``cap`` (nor below ``n``)."""
    padded = -(-n // multiple) * multiple
    return max(n, min(padded, cap)) if cap is not None else padded


def check_pad_multiple(pad_multiple: int) -> None:
    """Raises a ValueError naming ``pad_multiple`` unless it is a positive int."""
    if not isinstance(pad_multiple, int) or isinstance(pad_multiple, bool) or pad_multiple < 1:
        raise ValueError(f"pad_multiple must be a positive int, got {pad_multiple!r}")
