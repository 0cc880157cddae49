"""Training progress for people: a live bar on a terminal, plain lines in a log, and why a run stopped.

A tqdm bar redraws itself many times a second, which is what a terminal wants and what floods a log file or a CI
console. So the bar is shown only when stderr is a terminal (and ``progress_bar`` is on); otherwise one line per
metrics row goes to stdout, flushed: ``step 1,200/3,000 (40%)  loss 2.3145  lr 1.00e-03  5,310 tok/s  1.2 min``,
with the time left when a time budget (``max_minutes``) is set, and a shorter line whenever
:data:`HEARTBEAT_SECONDS` pass without one (slow steps, a busy machine), so a log never goes quiet for minutes.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm.auto import tqdm

HEARTBEAT_SECONDS = 30.0
"""Longest silence between two progress lines when no bar is shown."""


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


class Progress:
    """Reports a training run's steps: a tqdm bar on a terminal, else a line at every :meth:`log`.

    Args:
        total: the step the run ends at (``max_steps``), or None when only epochs bound it.
        initial: the step the run starts from (a resumed run's step).
        bar: show a live bar when ``stream`` is a terminal.
        deadline: ``time.monotonic()`` at which the time budget ends, or None.
        stream: where the bar is drawn (default stderr); lines go to stdout.
        unit: what the throughput counts per second (``"tok"``, ``"img"``, ``"word"``).
    """

    def __init__(
        self, total: int | None, initial: int, bar: bool, deadline: float | None = None, stream: TextIO | None = None,
        unit: str = "tok",
    ) -> None:
        stream = sys.stderr if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        self.live = bool(bar and callable(isatty) and isatty())
        self.total, self.deadline, self.unit = total, deadline, unit
        self.start = self.last_line = time.monotonic()
        self.step = initial
        self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, file=stream) if self.live else None

    def update(self, steps: int = 1) -> None:
        """Advances the bar by ``steps`` optimizer steps."""
        self.step += steps
        if self.bar is not None:
            self.bar.update(steps)
        elif time.monotonic() - self.last_line >= HEARTBEAT_SECONDS:
            self._print(f"step {self.step:,}{self._of(self.step)}")

    def _of(self, step: int) -> str:
        return f"/{self.total:,} ({step / self.total:.0%})" if self.total else ""

    def _print(self, head: str) -> None:
        now = time.monotonic()
        left = "" if self.deadline is None else f" ({_minutes(max(self.deadline - now, 0.0))} left of the time budget)"
        print(f"{head}  {_minutes(now - self.start)}{left}", flush=True)
        self.last_line = now

    def log(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        """Shows the latest metrics row: in the bar's postfix, or as one printed line."""
        if self.bar is not None:
            extra = {"left": _minutes(max(self.deadline - time.monotonic(), 0.0))} if self.deadline is not None else {}
            rate = {f"{self.unit}_s": f"{tokens_per_s:.0f}"}
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", **rate, **extra, refresh=False)
            return
        self._print(f"step {step:,}{self._of(step)}  loss {loss:.4f}  lr {lr:.2e}  {tokens_per_s:,.0f} {self.unit}/s")

    def close(self) -> None:
        """Ends the bar (idempotent)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class NullProgress:
    """A :class:`Progress` that shows nothing (the ranks other than 0 of a distributed run)."""

    def update(self, steps: int = 1) -> None:
        pass

    def log(self, step: int, loss: float, lr: float, tokens_per_s: float) -> None:
        pass

    def close(self) -> None:
        pass


def stop_message(step: int, max_steps: int | None, max_minutes: float | None, epoch: int,
                 max_epochs: int | None, budget_spent: bool, lr_left: float | None = None) -> str:
    """Why a run ended, in one line: ``train: stopped by the time budget (max_minutes=4) at step 3,012 of 100,000``.

    ``lr_left``: the learning rate at the stop as a fraction of its scheduled peak. A time budget that stops a run
    whose schedule (planned over ``max_steps``) has not decayed says so, with the ``max_steps`` that this budget
    held, since such a run never reaches the low learning rates its schedule was written for."""
    if budget_spent and not (max_steps is not None and step >= max_steps) and not (
        max_epochs is not None and epoch >= max_epochs
    ):
        planned = f" of {max_steps:,} planned" if max_steps is not None else ""
        text = (f"train: stopped by the time budget (max_minutes={max_minutes:g}) at step {step:,}{planned}; "
                "raise train.max_minutes or continue the run with --resume")
        if lr_left is not None and lr_left > 0.5 and max_steps is not None and step > 0:
            text += (f"; the learning-rate schedule, planned over max_steps={max_steps:,}, was still at "
                     f"{lr_left:.0%} of its peak: set train.max_steps to about {step:,} for it to decay within "
                     "this budget on this machine")
        return text
    if max_steps is not None and step >= max_steps:
        return f"train: done, {step:,} steps (max_steps={max_steps:,})"
    return f"train: done, {epoch:,} epochs (max_epochs={max_epochs:,}) at step {step:,}"
