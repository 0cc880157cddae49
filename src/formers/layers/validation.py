"""Host-side input checks shared by every model: clear errors naming the argument, before any kernel runs.

Shape and dtype checks are free. Checks of tensor *values* (id ranges, all-padding rows, non-finite or huge
pixels) read the data back to the host, which on an accelerator waits for its queue to drain; data pipelines that
already guarantee valid batches (the training tasks' collators) turn them off with ``value_checks(False)``, and
they never run while ``torch.compile`` traces. CPU tensors are always checked.

What the models accept:
- token ids: int64 or int32 tensors (what ``F.embedding`` takes); other dtypes are refused with a TypeError
  rather than converted, since narrow ids (uint8, int16) usually mean ids that already wrapped around.
- images: any floating dtype, cast to the model's dtype (as Hugging Face's ViT does), so float64 NumPy images
  and float32 images for a bfloat16 model both work; integer images (raw uint8 pixels) are refused, since they
  need the model's normalisation first. Pixels must be finite and within ``MAX_PIXEL`` (and within the range of
  the model's dtype): larger values overflow the first layers' sums of squares into inf and NaN logits.
- scalar arguments (``check_int``, ``check_number``): real ints and finite floats in range; ``bool`` is refused
  where a number is expected.
- text (``check_text``): a ``str`` that UTF-8 can encode; ids to decode (``check_decode_ids``): ints of the
  vocabulary, never floats.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any, Iterator

import torch
from torch import Tensor

_VALUE_CHECKS_ON_DEVICE = True

TOKEN_ID_DTYPES = (torch.int64, torch.int32)
MAX_PIXEL = 1e6
"""Largest pixel magnitude the image models take: normalised pixels lie within a few units and raw 16-bit values
below 65,536, while float32 sums of squares of pixels overflow from about 1e19."""


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
    if ids.dtype not in TOKEN_ID_DTYPES:
        raise TypeError(
            f"{name} must hold integer token ids of dtype torch.int64 or torch.int32, got dtype {ids.dtype}"
            + ("; convert with .long()" if not (ids.is_floating_point() or ids.is_complex()) else "")
        )
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


def check_images(images: Tensor, name: str, in_channels: int, dtype: torch.dtype | None = None) -> Tensor:
    """Checks a batch of images and returns it in ``dtype`` (the model's), ready for the first layer.

    Raises unless ``images`` is a non-empty floating (B, C, H, W) tensor with ``in_channels`` channels whose pixels
    are finite and within ``MAX_PIXEL`` (and within what ``dtype`` holds). The size check (what the patch or
    window grid can take) belongs to each model, which knows its grid.

    Args:
        images: (B, C, H, W) pixels, any floating dtype.
        name: the argument name used in errors.
        in_channels: C the model expects.
        dtype: the model's floating dtype; ``images`` is cast to it (None: left as it is).

    Returns:
        ``images`` (B, C, H, W) in ``dtype``.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, channels, height, width), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (batch, channels, height, width), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be a floating tensor (normalised pixels, e.g. float32), got dtype {images.dtype}"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch: shape {tuple(images.shape)}; need at least one image")
    if images.shape[1] != in_channels:
        raise ValueError(
            f"{name} has {images.shape[1]} channels, the model expects in_channels={in_channels} "
            f"(shape {tuple(images.shape)})"
        )
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"{name} has size {images.shape[2]}x{images.shape[3]}: shape {tuple(images.shape)}; "
                         "need images of at least one pixel")
    if should_check_values(images):
        _check_pixel_values(images, name, dtype)
    return images if dtype is None or images.dtype == dtype else images.to(dtype)


def _check_pixel_values(images: Tensor, name: str, dtype: torch.dtype | None) -> None:
    """Raises if a pixel is NaN, infinite or beyond what the model takes (one read back to the host)."""
    lo, hi = torch.aminmax(images)
    lo, hi = torch.stack([lo, hi]).tolist()
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{name} holds NaN pixel values")
    if math.isinf(lo) or math.isinf(hi):
        raise ValueError(f"{name} holds infinite pixel values ({'-inf' if lo == -math.inf else 'inf'})")
    limit, what = MAX_PIXEL, "the pixel range the image models take (MAX_PIXEL)"
    if dtype is not None and dtype.is_floating_point and torch.finfo(dtype).max < limit:
        limit, what = torch.finfo(dtype).max, f"the range of the model's {dtype}"
    worst = lo if -lo > hi else hi
    if abs(worst) > limit:
        raise ValueError(
            f"{name} holds pixel value {worst:.4g}, beyond +-{limit:g}, {what}: it would overflow the model into inf "
            "and NaN; normalise the images first (pixel / 255, then subtract the mean and divide by the std)"
        )


def check_image_size(height: int, width: int, name: str, multiple: int, what: str) -> None:
    """Raises unless ``height`` and ``width`` are positive multiples of ``multiple``, saying which sizes work."""
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise ValueError(
            f"{name} has size {height}x{width}, which the {what} cannot take: height and width must be "
            f"multiples of {multiple} (e.g. {max(multiple, (height // multiple) * multiple)}x"
            f"{max(multiple, (width // multiple) * multiple)})"
        )


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _bounds(minimum: float | None, maximum: float | None, greater_than: float | None) -> str:
    """The range in words: ``"in (0, 1]"``, ``"> 0"``, ``">= 1"``, ``"<= 5"``, or ``""`` for none."""
    if greater_than is not None:
        low, word = f"({_num(greater_than)}", f"> {_num(greater_than)}"
    elif minimum is not None:
        low, word = f"[{_num(minimum)}", f">= {_num(minimum)}"
    else:
        return f"<= {_num(maximum)}" if maximum is not None else ""
    return f"in {low}, {_num(maximum)}]" if maximum is not None else word


def check_int(
    value: Any, name: str, minimum: int | None = None, maximum: int | None = None, allow_none: bool = False
) -> None:
    """Raises unless ``value`` is an int (a ``bool`` is not) in [``minimum``, ``maximum``], or None if allowed.

    A TypeError for the wrong type (``1.5``, ``True``, ``"3"``), a ValueError for an int out of range; both name
    ``name``, what it must be and the value given.
    """
    if value is None and allow_none:
        return
    expected = " ".join(filter(None, ["an int", _bounds(minimum, maximum, None)])) + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_number(
    value: Any,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    greater_than: float | None = None,
    allow_none: bool = False,
) -> None:
    """Raises unless ``value`` is a finite real number (int or float; a ``bool`` is not) in range, or None if allowed.

    Args:
        value: the argument given.
        name: its name, used in errors.
        minimum: smallest value allowed (inclusive).
        maximum: largest value allowed (inclusive).
        greater_than: the value must be strictly above this.
        allow_none: None is allowed.
    """
    if value is None and allow_none:
        return
    bounds = _bounds(minimum, maximum, greater_than)
    expected = (bounds + " (a finite number)" if bounds and maximum is None else bounds or "a finite number") + (
        " or None" if allow_none else ""
    )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if (
        not (isinstance(value, numbers.Integral) or math.isfinite(value))
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
        or (greater_than is not None and value <= greater_than)
    ):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_text(text: Any, name: str) -> None:
    """Raises unless ``text`` is a str that UTF-8 can encode.

    Python decodes undecodable bytes (from a non-UTF-8 terminal, file or command line) into lone surrogates
    (``"\\udcff"``), which no tokenizer takes; this says so, naming ``name``, instead of a tokenizer's TypeError.
    """
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{name} is not valid UTF-8 text: it holds an undecodable byte (0x{ord(text[e.start]) & 0xFF:02x}) at "
            f"character {e.start + 1}; give the text as UTF-8"
        ) from None


def check_decode_ids(ids: Any, vocab_size: int, name: str = "ids") -> list[int]:
    """The token ids a tokenizer's ``decode`` was given, as a list of ints; raises naming the first bad one.

    Takes ints (NumPy ints and integer 0-d tensors too) or a 1-D integer tensor. A float is refused rather than
    truncated (``1.5`` is not id 1), as are bools and strings: TypeError; an id outside ``[0, vocab_size)``:
    ValueError.
    """
    if isinstance(ids, Tensor):
        if ids.dim() != 1:
            raise ValueError(f"{name} must be a 1-D sequence of token ids, got a tensor of shape {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer token ids, got a tensor of dtype {ids.dtype}")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise TypeError(f"{name} must be a sequence of token ids, got {type(ids).__name__}")
    out = []
    for pos, i in enumerate(ids):
        if isinstance(i, Tensor) and i.dim() == 0 and not (i.dtype.is_floating_point or i.dtype == torch.bool):
            i = i.item()
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"{name}[{pos}] must be an int token id, got {i!r} ({type(i).__name__})")
        if not 0 <= i < vocab_size:
            raise ValueError(f"{name}[{pos}] must be in [0, {vocab_size}), got {i}: outside the vocabulary range")
        out.append(int(i))
    return out
