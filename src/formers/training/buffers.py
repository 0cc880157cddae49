"""A copy of every buffer of a model (BatchNorm running statistics, counters...), refreshed in place once per
step and put back when the step is skipped, so a skipped step leaves the whole model as it was.

The copies of the buffers of one dtype and device lie end to end in one flat tensor, so that a step's refresh is one
multi-tensor copy per dtype and its device-decided selection (:meth:`BufferSnapshot.select`) a concatenation, one
``torch.where`` and one multi-tensor copy per dtype, whatever the number of buffers: EfficientFormer's 42 buffers
took 42 ``torch.where`` and about 100 separate copies a step, 1.5 ms of host time beside a 4 ms graphed step
(``benchmarks/results/step_profile_efficientformer-fashion-mnist_graphed_h100.json``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class _Group(NamedTuple):
    """The buffers of one dtype and device: their positions in the snapshot and their copies, end to end."""

    index: list[int]
    flat: Tensor  # (sum of their sizes,)
    dtype: torch.dtype
    device: torch.device


class BufferSnapshot:
    """Keeps a copy of ``module``'s buffers.

    :meth:`take` refreshes the copy (no host synchronisation, nothing at all for a model without buffers);
    :meth:`restore` writes it back, also into buffers a forward pass replaced by new tensors. The buffers are those
    the module holds when the snapshot is made (a buffer registered later, such as a lazily built cache, is not
    tracked).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._slots: list[tuple[nn.Module, str]] = []  # (owner, attribute) of every buffer
        self._live: list[Tensor] = []
        self._saved: list[Tensor] = []  # views into the groups' flat copies
        self._groups: list[_Group] = []
        self.version = 0  # counts the re-scans: a copy (and what a CUDA graph captured of it) is replaced by each
        self._scan()

    def _scan(self) -> None:
        self.version += 1
        self._slots = [(m, name) for m in self.module.modules() for name, b in m._buffers.items() if b is not None]
        self._live = [m._buffers[name] for m, name in self._slots]
        by_kind: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        for i, b in enumerate(self._live):
            by_kind.setdefault((b.dtype, b.device), []).append(i)
        self._saved = [torch.empty(0)] * len(self._live)
        self._groups = []
        for (dtype, device), index in by_kind.items():
            flat = torch.empty(sum(self._live[i].numel() for i in index), dtype=dtype, device=device)
            for i, part in zip(index, _parts(flat, [self._live[i].shape for i in index])):
                self._saved[i] = part
            self._groups.append(_Group(index, flat, dtype, device))
        self.take()

    def take(self) -> None:
        """Copies the current buffers (re-allocating the copy only when a buffer tensor was replaced)."""
        if not self._slots:
            return
        live = [m._buffers.get(name) for m, name in self._slots]
        if any(a is not b for a, b in zip(live, self._live)):
            self._scan()
            return
        with torch.no_grad():
            for g in self._groups:
                torch._foreach_copy_([self._saved[i] for i in g.index], [self._live[i] for i in g.index])

    def restore(self) -> None:
        """Writes the copy back into the module's buffers."""
        same_src, same_dst = [], []
        for (owner, name), then, saved in zip(self._slots, self._live, self._saved):
            if owner._buffers.get(name) is then:
                same_dst.append(then)
                same_src.append(saved)
            else:  # the forward pass replaced the tensor: put a copy of the old one back in its place
                owner._buffers[name] = saved.clone()
                self._live[self._live.index(then)] = owner._buffers[name]
        if same_dst:
            with torch.no_grad():
                torch._foreach_copy_(same_dst, same_src)

    def replaced(self) -> bool:
        """Whether a buffer tensor was replaced since the last :meth:`take` (its old value cannot be selected in
        place)."""
        return any(m._buffers.get(name) is not then for (m, name), then in zip(self._slots, self._live))

    def select(self, keep: Tensor) -> None:
        """Keeps the current buffers where ``keep`` (a 0-dim bool device tensor) is True, else puts the copy back,
        without reading ``keep`` on the host. A buffer the forward pass replaced by a tensor of the same shape is
        selected into the new tensor; one of another shape cannot be, and raises (check :meth:`replaced` first)."""
        if not self._slots:
            return
        with torch.no_grad():
            for g in self._groups:
                live = []
                for i in g.index:
                    owner, name = self._slots[i]
                    t = owner._buffers[name]
                    if t.shape != self._saved[i].shape:
                        raise ValueError(f"buffer {name!r} changed shape from {tuple(self._saved[i].shape)} to "
                                         f"{tuple(t.shape)}")
                    live.append(t)
                if any(t.dtype != g.dtype or t.device != g.device for t in live):  # a replaced buffer, another dtype
                    for t, i in zip(live, g.index):
                        t.copy_(torch.where(keep.to(t.device), t, self._saved[i]))
                    continue
                merged = torch.where(keep.to(g.device), torch.cat([t.reshape(-1) for t in live]), g.flat)
                torch._foreach_copy_(live, _parts(merged, [t.shape for t in live]))


def _parts(flat: Tensor, shapes: list[torch.Size]) -> list[Tensor]:
    """``flat`` cut into consecutive views of the given shapes."""
    parts, offset = [], 0
    for shape in shapes:
        n = shape.numel()
        parts.append(flat[offset : offset + n].view(shape))
        offset += n
    return parts
