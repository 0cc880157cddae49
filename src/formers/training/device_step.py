"""Optimizer steps whose non-finite skip is decided on the device, and batches moved to the device ahead of use.

Today's rule is kept: a step whose loss or gradient norm is not finite changes nothing (parameters, optimizer
state, buffers such as BatchNorm statistics), does not advance the learning-rate schedule, and counts towards
``max_consecutive_nonfinite``. What changes is where the decision is taken: ``finite = isfinite(loss) &
isfinite(grad_norm)`` stays a device tensor, and

- a fused Adam/AdamW gets it as ``found_inf`` (the mechanism :class:`torch.amp.GradScaler` uses): the kernel leaves
  parameters and moments alone and the step counters are taken back;
- any other optimizer steps unconditionally and ``torch.where`` puts the old parameters and state back;
- buffers are selected with ``torch.where`` too.

The per-step loss, norm and flag stay on the device in :class:`PendingSteps` until the host reads them all at once
(every ``log_every`` steps, and before evaluations, checkpoints and stops); a run of non-finite steps is therefore
detected at the next read, and the error names the exact step where the limit was reached.

The host still decides, one read per step as before, on a CPU (where the read waits for nothing and the
``torch.where`` copies would only cost time), under FSDP, for an optimizer
whose state is not beside its parameters (a non-capturable, non-fused Adam on CUDA keeps its step counters on the
CPU), while the optimizer still creates its state, and when the forward pass replaced a buffer tensor.

With fp16 the GradScaler unscales the gradients before the norm is taken, so an overflow makes the norm
non-finite and the step is skipped here (the scaler's ``step`` is not called: its own skip is the same decision);
``GradScaler.update`` still lowers the scale from the overflow it recorded, on the device.

The learning-rate schedule needs one bit per step on the host (was the last step applied?) before the next update:
:class:`SchedulerLag` copies the flag into pinned memory behind an event and waits for it only just before the next
optimizer update, by when the device is busy with the next forward and backward, so the queue never drains.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from formers.devices import move_to_device
from formers.training.buffers import BufferSnapshot


def is_fused_adam(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is an Adam/AdamW whose every group runs the fused kernel (which honours ``found_inf``)."""
    return isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)) and all(
        g.get("fused") for g in optimizer.param_groups)


class DeviceSkipStep:
    """Applies an optimizer step only where a device flag says the step is finite, without reading the flag.

    Args:
        optimizer: the optimizer (its ``step()`` is called on every step).
        params: the parameters it updates.
        buffers: the snapshot of the model's buffers taken at the step boundary.

    On a CPU the host decides (reading a CPU tensor waits for nothing, and the ``torch.where`` path's copies of the
    parameters and state would cost about twice the optimizer step): :meth:`ready` is False there unless the class
    attribute ``on_cpu`` is set (the tests set it, to check this path against the host-decided one bit for bit).

    A parameter becomes *settled* once an applied step (see :meth:`mark_applied`) gave it its optimizer state; a
    step where a parameter with a gradient is not settled yet (the optimizer would create its state lazily, which
    a ``torch.where`` cannot undo) is left to the host path, see :meth:`ready`.
    """

    on_cpu = False

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], buffers: BufferSnapshot) -> None:
        self.optimizer = optimizer
        self.params = params
        self.buffers = buffers
        self.fused = is_fused_adam(optimizer)
        self._settled: set[int] = set()
        self._checked: tuple[int, ...] | None = None  # the parameters with gradients the last full check passed

    def ready(self) -> bool:
        """Every parameter with a gradient has settled optimizer state made of tensors beside it (and the parameters
        are not on a CPU, unless ``on_cpu``). The full check runs once per set of parameters with gradients."""
        with_grad = tuple(id(p) for p in self.params if p.grad is not None)
        if with_grad != self._checked:
            if not self._check():
                return False
            self._checked = with_grad
        return not self.buffers.replaced()

    def _check(self) -> bool:
        for p in self.params:
            if p.grad is None:
                continue
            if id(p) not in self._settled or (p.device.type == "cpu" and not self.on_cpu):
                return False
            for value in self.optimizer.state.get(p, {}).values():
                # a CPU step counter of a CUDA parameter (non-capturable Adam) would need a host read to be selected
                if not isinstance(value, Tensor) or value.device != p.device:
                    return False
        return True

    def mark_applied(self) -> None:
        """Called after a host-decided step was applied: its parameters' state now exists."""
        self._settled.update(id(p) for p in self.params if p.grad is not None)

    @torch.no_grad()
    def step(self, finite: Tensor) -> None:
        """One optimizer update that changes nothing where ``finite`` (a 0-dim bool device tensor) is False."""
        live = [p for p in self.params if p.grad is not None]
        if self.fused:
            self.optimizer.found_inf = (~finite).float()  # type: ignore[attr-defined]
            self.optimizer.grad_scale = None  # type: ignore[attr-defined]
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf, self.optimizer.grad_scale  # type: ignore[attr-defined]
        else:
            old_params = [p.detach().clone() for p in live]
            old_state = [(p, k, v.clone()) for p in live for k, v in self.optimizer.state.get(p, {}).items()]
            self.optimizer.step()
            for p, old in zip(live, old_params):
                p.copy_(torch.where(finite, p, old))
            for p, k, old in old_state:
                new = self.optimizer.state[p][k]
                new.copy_(torch.where(finite.to(new.device), new, old))
        self.buffers.select(finite)


class PendingSteps:
    """The ``(loss, grad norm)`` of the steps not yet read by the host, kept on the device."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[Tensor] = []

    def add(self, step: int, values: Tensor) -> None:
        self.steps.append(step)
        self.values.append(values)

    def __len__(self) -> int:
        return len(self.steps)

    def read(self, extra: Tensor | None = None) -> tuple[list[tuple[int, float, float]], list[float]]:
        """One host read of every pending step (and of ``extra``, a 1-d tensor read alongside); clears them."""
        parts = [torch.stack(self.values).flatten()] if self.values else []
        if extra is not None:
            parts.append(extra.to(parts[0].device, parts[0].dtype) if parts else extra)
        flat = torch.cat(parts).tolist() if parts else []
        n = 2 * len(self.steps)
        rows = [(step, flat[2 * i], flat[2 * i + 1]) for i, step in enumerate(self.steps)]
        self.steps, self.values = [], []
        return rows, flat[n:]


class NonFiniteLossError(RuntimeError):
    """Raised after ``max_consecutive_nonfinite`` optimizer steps in a row had a non-finite loss or gradient."""


def count_step(state: Any, step: int, loss: float, norm: float, max_consecutive: int, fp16: bool) -> bool:
    """Counts optimizer step ``step`` (read on the host) into ``state``'s non-finite counters; returns whether it
    was finite (applied). Raises :class:`NonFiniteLossError` at the ``max_consecutive``-th non-finite step in a row;
    with ``fp16`` only a non-finite loss counts towards it (an overflowed scaled gradient is the GradScaler's
    business: it lowers the scale)."""
    if math.isfinite(loss) and math.isfinite(norm):
        state.consecutive_nonfinite = 0
        return True
    state.total_nonfinite += 1
    if not fp16 or not math.isfinite(loss):
        state.consecutive_nonfinite += 1
    if state.consecutive_nonfinite >= max_consecutive:
        late = f", detected after step {state.step}" if state.step >= step else ""
        raise NonFiniteLossError(
            f"{state.consecutive_nonfinite} optimizer steps in a row (ending at step {step}{late}) had a non-finite "
            f"loss ({loss}) or gradient norm ({norm}); max_consecutive_nonfinite={max_consecutive}. Start again "
            "with a lower learning rate, or resume from the last checkpoint (fit(resume=True)) with clipping "
            "(max_grad_norm) or bf16 instead of fp16."
        )
    return False


class SchedulerLag:
    """Steps a learning-rate scheduler for an applied step once the host may know it was applied.

    :meth:`defer` records the step's device flag (copied without a sync into pinned memory on CUDA);
    :meth:`resolve`, called just before the next optimizer update or before the host reads the schedule, waits for
    that copy (the device has finished the step by then, or soon after) and steps the scheduler if it was applied.
    """

    def __init__(self, scheduler: Any | None) -> None:
        self.scheduler = scheduler
        self._flag: Tensor | None = None
        self._host: Tensor | None = None  # pinned, reused: the previous copy was waited for before the next one
        self._event: Any = None

    def defer(self, finite: Tensor) -> None:
        if self.scheduler is None:
            return
        if finite.is_cuda:
            if self._host is None:
                self._host = torch.empty((), dtype=torch.bool, pin_memory=True)
                self._event = torch.cuda.Event()
            self._host.copy_(finite, non_blocking=True)
            self._event.record()
            self._flag = self._host
        else:
            self._flag = finite

    def resolve(self) -> None:
        if self._flag is None:
            return
        if self._flag is self._host:
            self._event.synchronize()
        applied, self._flag = bool(self._flag), None
        if applied:
            self.scheduler.step()


class DeviceFeed:
    """Moves batches to the device on a side CUDA stream from pinned memory, so the copy of the next batch overlaps
    the step the device is still running (the host runs ahead of it now that steps do not synchronise).

    Batches are still taken from the loader one at a time, when the step needs them (the loader's position, its
    state and the random generators at a step boundary are as before). On a CPU device it only calls
    :func:`~formers.devices.move_to_device` (which leaves CPU tensors as they are).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __call__(self, batch: Any) -> Any:
        if self._stream is None:
            return move_to_device(batch, self.device)
        batch = _pinned(batch)
        with torch.cuda.stream(self._stream):
            moved = move_to_device(batch, self.device)
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self._stream)
        _record_stream(moved, current)
        return moved


def _pinned(batch: Any) -> Any:
    if isinstance(batch, Tensor):
        return batch.pin_memory() if batch.device.type == "cpu" and not batch.is_pinned() else batch
    if isinstance(batch, dict):
        return {k: _pinned(v) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_pinned(v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_pinned(v) for v in batch)
    return batch


def _record_stream(batch: Any, stream: Any) -> None:
    """Tells the caching allocator that ``stream`` uses the moved tensors (they were allocated on the copy stream)."""
    if isinstance(batch, Tensor):
        if batch.is_cuda:
            batch.record_stream(stream)
    elif isinstance(batch, dict):
        for v in batch.values():
            _record_stream(v, stream)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            _record_stream(v, stream)
