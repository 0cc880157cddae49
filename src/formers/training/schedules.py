"""Learning-rate schedules as plain callable objects for ``torch.optim.lr_scheduler.LambdaLR``.

Each schedule is an object mapping ``step`` (the number of optimizer updates already done, LambdaLR's
``last_epoch``) to a multiplier of the optimizer's learning rate; update number ``n = step + 1`` (1-based, as the
paper's ``step_num``) uses it. Being objects with plain-number attributes, their state is part of
``LambdaLR.state_dict()`` and restored by ``load_state_dict``, so resumed runs continue the same curve.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("inverse_sqrt", "cosine", "linear", "constant")


def _check(warmup_steps: int, total_steps: int | None = None, min_lr_ratio: float = 0.0) -> None:
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if total_steps is not None and total_steps < max(1, warmup_steps):
        raise ValueError(f"total_steps must be >= max(1, warmup_steps={warmup_steps}), got {total_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")


class InverseSqrtSchedule:
    """Linear warmup then decay proportional to the inverse square root of the step (Vaswani et al., eq. 3).

    With ``d_model`` (the paper's form, use with optimizer ``lr=1.0`` so the multiplier *is* the rate):
    ``lr(n) = scale * d_model^-0.5 * min(n^-0.5, n * warmup_steps^-1.5)``.
    Without ``d_model`` (peak form): ``lr(n) = lr_peak * min(n / warmup_steps, sqrt(warmup_steps / n))``, which
    reaches the optimizer's ``lr`` at ``n = warmup_steps``.

    Args:
        warmup_steps: the paper uses 4000; must be >= 1.
        d_model: model width for the paper's form; ``None`` for the peak form.
        scale: extra factor of the paper's form (1.0 in the paper).
    """

    def __init__(self, warmup_steps: int, d_model: int | None = None, scale: float = 1.0) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be >= 1 for the inverse-sqrt schedule, got {warmup_steps}")
        if d_model is not None and d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        self.warmup_steps = int(warmup_steps)
        self.d_model = d_model
        self.scale = float(scale)

    def __call__(self, step: int) -> float:
        n = step + 1
        w = self.warmup_steps
        if self.d_model is not None:
            return self.scale * self.d_model**-0.5 * min(n**-0.5, n * w**-1.5)
        return min(n / w, math.sqrt(w / n))


class WarmupCosineSchedule:
    """Linear warmup to the optimizer's lr, then half a cosine down to ``min_lr_ratio * lr`` at ``total_steps``.

    ``m(n) = n / w`` for ``n <= w``; else ``r + (1 - r) * (1 + cos(pi * p)) / 2`` with
    ``p = min(1, (n - w) / (total_steps - w))``.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> None:
        _check(warmup_steps, total_steps, min_lr_ratio)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        n, w = step + 1, self.warmup_steps
        if n <= w:
            return n / w
        progress = min(1.0, (n - w) / max(1, self.total_steps - w))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupLinearSchedule:
    """Linear warmup, then linear decay to ``min_lr_ratio * lr`` at ``total_steps``.

    ``m(n) = n / w`` for ``n <= w``; else ``r + (1 - r) * (1 - p)`` with ``p = min(1, (n - w) / (total_steps - w))``.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> None:
        _check(warmup_steps, total_steps, min_lr_ratio)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        n, w = step + 1, self.warmup_steps
        if n <= w:
            return n / w
        progress = min(1.0, (n - w) / max(1, self.total_steps - w))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * (1.0 - progress)


class ConstantSchedule:
    """Optional linear warmup, then the optimizer's lr: ``m(n) = min(1, n / w)`` (1 when ``w = 0``)."""

    def __init__(self, warmup_steps: int = 0) -> None:
        _check(warmup_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        n = step + 1
        return 1.0 if self.warmup_steps == 0 else min(1.0, n / self.warmup_steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    warmup_steps: int = 0,
    total_steps: int | None = None,
    d_model: int | None = None,
    scale: float = 1.0,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Wraps one of the schedules above in a ``LambdaLR`` (step it once per optimizer update).

    Args:
        optimizer: the optimizer whose group learning rates are multiplied.
        name: ``"inverse_sqrt"``, ``"cosine"``, ``"linear"`` or ``"constant"``.
        warmup_steps: updates of linear warmup.
        total_steps: updates at which cosine/linear reach ``min_lr_ratio`` (required for those).
        d_model: for ``"inverse_sqrt"``: the paper's form when given (set the optimizer lr to 1.0), else peak form.
        scale: factor of the paper's inverse-sqrt form.
        min_lr_ratio: final lr of cosine/linear as a fraction of the peak.

    Returns:
        The scheduler; ``state_dict()`` includes the schedule's parameters.
    """
    if name == "inverse_sqrt":
        schedule = InverseSqrtSchedule(warmup_steps, d_model, scale)
    elif name in ("cosine", "linear"):
        if total_steps is None:
            raise ValueError(f"schedule {name!r} needs total_steps, got None")
        cls = WarmupCosineSchedule if name == "cosine" else WarmupLinearSchedule
        schedule = cls(warmup_steps, total_steps, min_lr_ratio)
    elif name == "constant":
        schedule = ConstantSchedule(warmup_steps)
    else:
        raise ValueError(f"name must be one of {SCHEDULES}, got {name!r}")
    return LambdaLR(optimizer, schedule)


def decay_left(scheduler, optimizer: torch.optim.Optimizer) -> float | None:
    """The first parameter group's learning rate now, as a fraction of its peak, when ``scheduler`` is a cosine or
    linear decay (planned over the run's ``max_steps``); None for other schedules or none."""
    lambdas = getattr(scheduler, "lr_lambdas", None) or [None]
    if not isinstance(lambdas[0], (WarmupCosineSchedule, WarmupLinearSchedule)):
        return None
    group = optimizer.param_groups[0]
    peak = group.get("initial_lr")
    return float(group["lr"]) / float(peak) if peak else None
