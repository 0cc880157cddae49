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


CUDA_PAD_MULTIPLE = 16
"""What the text recipes pad their training batches to multiples of on a GPU (unless their ``data.pad_multiple``
says otherwise): few shapes for CUDA graphs and compiled steps; elsewhere batches keep their longest row's length."""


def default_pad_multiple(pad_multiple: int | None, cuda: bool) -> int:
    """``pad_multiple`` as a recipe gives it, or for None :data:`CUDA_PAD_MULTIPLE` on a GPU and 1 elsewhere."""
    if pad_multiple is not None:
        return pad_multiple
    return CUDA_PAD_MULTIPLE if cuda else 1
