"""Devices: resolving a device name, moving (nested) batches onto it, capturing CUDA graphs cheaply. A leaf any room
may use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other strings are checked for availability."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available")
    return resolved


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 / AMX, as oneDNN reports); without it bf16 autocast
    emulates the type and runs many times slower than float32."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None else True
    except RuntimeError:
        return True


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Moves tensors in (nested) dicts, lists and tuples, or any object with ``.to(device)``, to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    if hasattr(batch, "to"):
        return batch.to(device)
    return batch


@contextlib.contextmanager
def side_stream() -> Iterator[None]:
    """Runs what is inside on a new CUDA stream that first waits for the current stream's work, which then waits for
    it: the warm-up before a graph capture (``torch.cuda.graph`` asks for one on a side stream)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        yield
    torch.cuda.current_stream().wait_stream(stream)


_CAPTURE_STREAMS: dict[int, Any] = {}


@contextlib.contextmanager
def light_capture(graph: Any, pool: Any = None) -> Iterator[None]:
    """Captures what runs inside into ``graph`` (a ``torch.cuda.CUDAGraph``), as ``torch.cuda.graph(graph, pool)``
    does but without its preparation for every capture: a whole-device synchronisation and the emptying of the
    caching allocator (``empty_cache``, whose freed blocks the next allocations then get back from the driver). The
    capture's side stream waits for the current stream instead, and the current stream for it after. For code that
    captures many small graphs in a row (a beam search's batch shapes and attention windows); ``pool`` is another
    graph's ``pool()`` to share its memory."""
    device = torch.cuda.current_device()
    stream = _CAPTURE_STREAMS.get(device)
    if stream is None:
        stream = _CAPTURE_STREAMS[device] = torch.cuda.Stream(device)
    current = torch.cuda.current_stream(device)
    stream.wait_stream(current)
    with torch.cuda.stream(stream):
        graph.capture_begin(*(() if pool is None else (pool,)))
        try:
            yield
        finally:
            graph.capture_end()
    current.wait_stream(stream)
