"""Host-side input checks shared by every model: clear errors naming the argument, before any kernel runs.

Shape and dtype checks are free. Checks of tensor *values* (id ranges, all-padding rows) read the data back to
the host, which on an accelerator waits for its queue to drain; data pipelines that already guarantee valid
batches (the training tasks' collators) turn them off with ``value_checks(False)``. CPU tensors are always checked.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor

_VALUE_CHECKS_ON_DEVICE = True


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Turns value checks of accelerator tensors on or off inside the ``with`` block."""
    global _VALUE_CHECKS_ON_DEVICE
    previous, _VALUE_CHECKS_ON_DEVICE = _VALUE_CHECKS_ON_DEVICE, enabled
    try:
        yield
    finally:
        _VALUE_CHECKS_ON_DEVICE = previous


def should_check_values(t: Tensor) -> bool:
    """Whether a value check of ``t`` should run (never while compiling; on devices only when enabled)."""
    if torch.compiler.is_compiling():
        return False
    return t.device.type == "cpu" or _VALUE_CHECKS_ON_DEVICE


def check_token_ids(ids: Tensor, vocab_size: int, name: str) -> None:
    """Raises if ``ids`` is not an integer tensor of values in [0, vocab_size)."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.numel() == 0 or not should_check_values(ids):
        return
    lo, hi = torch.aminmax(ids)
    lo, hi = int(lo), int(hi)
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} holds token id {bad}, outside the vocabulary range [0, {vocab_size})")


def check_ids_shape(ids: Tensor, name: str, max_seq_len: int) -> None:
    """Raises unless ``ids`` is (B, T) with 1 <= T <= max_seq_len and B >= 1."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, seq_len), got shape {tuple(ids.shape)}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(ids.shape)}; need at least one sequence of one token")
    if ids.shape[1] > max_seq_len:
        raise ValueError(
            f"{name} has length {ids.shape[1]}, beyond max_seq_len={max_seq_len}; "
            "shorten the input or build the model with a larger max_seq_len"
        )


def check_padding_mask(mask: Tensor | None, ids: Tensor, name: str) -> None:
    """Raises unless ``mask`` is None or a boolean tensor shaped like ``ids`` with a real token in every row."""
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{name} must be a boolean tensor (True = real token), got {got}")
    if mask.shape != ids.shape:
        raise ValueError(f"{name} must have the shape of its ids {tuple(ids.shape)}, got {tuple(mask.shape)}")
    if should_check_values(mask) and not bool(mask.any(dim=1).all()):
        raise ValueError(f"{name} hides every token of at least one sequence; each row needs one real token")


def check_images(images: Tensor, name: str, in_channels: int) -> None:
    """Raises unless ``images`` is a non-empty floating (B, C, H, W) tensor with ``in_channels`` channels and no NaN.

    The size check (what the patch or window grid can take) belongs to each model, which knows its grid.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, channels, height, width), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (batch, channels, height, width), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (normalised pixels), got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch: shape {tuple(images.shape)}; need at least one image")
    if images.shape[1] != in_channels:
        raise ValueError(
            f"{name} has {images.shape[1]} channels, the model expects in_channels={in_channels} "
            f"(shape {tuple(images.shape)})"
        )
    if should_check_values(images) and bool(torch.isnan(images).any()):
        raise ValueError(f"{name} holds NaN pixel values")


def check_image_size(height: int, width: int, name: str, multiple: int, what: str) -> None:
    """Raises unless ``height`` and ``width`` are positive multiples of ``multiple``, saying which sizes work."""
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise ValueError(
            f"{name} has size {height}x{width}, which the {what} cannot take: height and width must be "
            f"multiples of {multiple} (e.g. {max(multiple, (height // multiple) * multiple)}x"
            f"{max(multiple, (width // multiple) * multiple)})"
        )
