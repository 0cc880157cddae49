"""A copy of every buffer of a model (BatchNorm running statistics, counters...), refreshed in place once per
step and put back when the step is skipped, so a skipped step leaves the whole model as it was."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BufferSnapshot:
    """Keeps a copy of ``module``'s buffers.

    :meth:`take` refreshes the copy with one fused device copy (no host synchronisation, nothing at all for a
    model without buffers); :meth:`restore` writes it back, also into buffers a forward pass replaced by new
    tensors. The buffers are those the module holds when the snapshot is made (a buffer registered later, such as
    a lazily built cache, is not tracked).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._slots: list[tuple[nn.Module, str]] = []  # (owner, attribute) of every buffer
        self._live: list[Tensor] = []
        self._saved: list[Tensor] = []
        self._scan()

    def _scan(self) -> None:
        self._slots = [(m, name) for m in self.module.modules() for name, b in m._buffers.items() if b is not None]
        self._live = [m._buffers[name] for m, name in self._slots]
        self._saved = [b.detach().clone() for b in self._live]

    def take(self) -> None:
        """Copies the current buffers (re-allocating the copy only when a buffer tensor was replaced)."""
        if not self._slots:
            return
        live = [m._buffers.get(name) for m, name in self._slots]
        if any(a is not b for a, b in zip(live, self._live)):
            self._scan()
            return
        with torch.no_grad():
            torch._foreach_copy_(self._saved, self._live)

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
        """Whether a buffer tensor was replaced since the last :meth:`take` (its old value cannot be selected in place)."""
        return any(m._buffers.get(name) is not then for (m, name), then in zip(self._slots, self._live))

    def select(self, keep: Tensor) -> None:
        """Keeps the current buffers where ``keep`` (a 0-dim bool device tensor) is True, else puts the copy back,
        without reading ``keep`` on the host. A buffer the forward pass replaced by a tensor of the same shape is
        selected into the new tensor; one of another shape cannot be, and raises (check :meth:`replaced` first)."""
        if not self._slots:
            return
        with torch.no_grad():
            for (owner, name), saved in zip(self._slots, self._saved):
                live = owner._buffers[name]
                if live.shape != saved.shape:
                    raise ValueError(f"buffer {name!r} changed shape from {tuple(saved.shape)} to {tuple(live.shape)}")
                live.copy_(torch.where(keep.to(live.device), live, saved))
