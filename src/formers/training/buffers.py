"""A copy of every buffer of a model (BatchNorm running statistics, counters...), refreshed in place once per
step and put back when the step is skipped, so a skipped step leaves the whole model as it was."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BufferSnapshot:
    """Keeps a copy of ``module``'s buffers.

    :meth:`take` refreshes the copy with one fused device copy (no host synchronisation); :meth:`restore` writes
    it back, also into buffers a forward pass replaced by new tensors. A model without buffers costs nothing.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._names: list[str] = []
        self._live: list[Tensor] = []
        self._saved: list[Tensor] = []

    def _current(self) -> tuple[list[str], list[Tensor]]:
        named = list(self.module.named_buffers())
        return [n for n, _ in named], [b for _, b in named]

    def take(self) -> None:
        """Copies the current buffers (re-allocating the copy only when the set of buffer tensors changed)."""
        names, live = self._current()
        if names != self._names or any(a is not b for a, b in zip(live, self._live)):
            self._names, self._live = names, live
            self._saved = [b.detach().clone() for b in live]
        elif live:
            with torch.no_grad():
                torch._foreach_copy_(self._saved, live)

    def restore(self) -> None:
        """Writes the copy back into the module's buffers."""
        names, live = self._current()
        current = dict(zip(names, live))
        same_src, same_dst = [], []
        for name, then, saved in zip(self._names, self._live, self._saved):
            now = current.get(name)
            if now is then:
                same_dst.append(now)
                same_src.append(saved)
            else:  # the forward pass replaced the tensor: put a copy of the old one back in its place
                owner, _, attr = name.rpartition(".")
                self.module.get_submodule(owner)._buffers[attr] = saved.clone()
        if same_dst:
            with torch.no_grad():
                torch._foreach_copy_(same_dst, same_src)
