"""Stopping a run on Ctrl-C without losing it: the first SIGINT asks the Trainer to stop after the current step
(which it checkpoints), a second one stops at once (atomic saves leave the last complete checkpoint intact).

The Trainer also keeps, at every step boundary, what it needs to go back to it (:class:`StepBoundary`):
a ``KeyboardInterrupt`` raised in the middle of a step (by a loader, a task, or a Ctrl-C that arrived where no
handler could defer it) rewinds the partial step and saves the last complete one, so the resumed run takes
exactly the steps the uninterrupted one would have.
"""

from __future__ import annotations

import copy
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by ``Trainer.fit`` when a run was interrupted (Ctrl-C).

    Attributes:
        step: the last complete optimizer step.
        checkpoint: the step checkpoint saved for the interruption, or ``None`` when nothing was saved (a second
            Ctrl-C, or an interruption before the first step).
        latest: the run's newest complete checkpoint (``checkpoint`` when one was saved), or ``None``.
    """

    def __init__(self, step: int, checkpoint: Path | None, latest: Path | None) -> None:
        self.step, self.checkpoint, self.latest = step, checkpoint, latest
        if checkpoint is not None:
            text = f"interrupted after step {step}; saved {checkpoint}"
        elif latest is not None:
            text = f"interrupted at step {step}; nothing new saved, the last checkpoint is {latest}"
        else:
            text = f"interrupted at step {step}, before any checkpoint was written"
        super().__init__(text)


class DeferredInterrupt:
    """Context manager: while active (main thread, default SIGINT handler only), the first Ctrl-C sets
    :attr:`requested` instead of raising; a second raises ``KeyboardInterrupt`` at once.

    Elsewhere (another thread, or an application that installed its own handler) it changes nothing and Ctrl-C
    raises as usual.
    """

    MESSAGE = (b"\nformers: interrupted: finishing this step, then saving a checkpoint "
               b"(Ctrl-C again stops at once; the last saved checkpoint stays intact)\n")

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        os.write(2, self.MESSAGE)  # async-signal-safe, unlike print

    def __enter__(self) -> DeferredInterrupt:
        self.requested = False
        if threading.current_thread() is threading.main_thread() and (
            signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


@dataclass
class StepBoundary:
    """What a step changes before its optimizer update, as it was at the end of the previous step: the batch
    position, the torch random generators (CPU and CUDA: dropout, augmentation and formers' loaders draw from them)
    and the loader's own state when it has one. Buffers are kept by the Trainer's
    :class:`~formers.training.buffers.BufferSnapshot`.

    Python's and numpy's global generators are not kept (reading them costs more than a small step): a task that
    draws from them mid-step resumes from a rewound step consistently, though not bit for bit.
    """

    epoch: int
    batch_in_epoch: int
    torch_cpu: Tensor
    torch_cuda: list[Tensor] | None
    loader_state: Any

    @classmethod
    def capture(cls, epoch: int, batch_in_epoch: int, loader: Any) -> StepBoundary:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        loader_state = copy.deepcopy(loader.state_dict()) if hasattr(loader, "state_dict") else None
        return cls(epoch, batch_in_epoch, torch.get_rng_state(), cuda, loader_state)

    def restore(self, loader: Any) -> None:
        """Puts the torch generators and the loader back (the Trainer resets its own counters)."""
        torch.set_rng_state(self.torch_cpu)
        if self.torch_cuda is not None:
            torch.cuda.set_rng_state_all(self.torch_cuda)
        if self.loader_state is not None:
            loader.load_state_dict(self.loader_state)
