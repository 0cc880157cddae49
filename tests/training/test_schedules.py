from __future__ import annotations

import math

import pytest
import torch

from formers.training.schedules import (
    ConstantSchedule,
    InverseSqrtSchedule,
    WarmupCosineSchedule,
    WarmupLinearSchedule,
    build_scheduler,
)


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _lrs(scheduler, steps: int) -> list[float]:
    """The lr used by updates 1..steps (read before each scheduler.step())."""
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("n", [1, 2, 100, 3999, 4000, 4001, 10000, 100000])
def test_inverse_sqrt_paper_formula(n: int) -> None:
    d, w = 512, 4000
    expected = d**-0.5 * min(n**-0.5, n * w**-1.5)
    assert InverseSqrtSchedule(w, d_model=d)(n - 1) == pytest.approx(expected, rel=1e-12)
    assert InverseSqrtSchedule(w, d_model=d, scale=2.0)(n - 1) == pytest.approx(2 * expected, rel=1e-12)


def test_inverse_sqrt_through_lambdalr_peaks_at_warmup() -> None:
    sched = build_scheduler(_optimizer(lr=1.0), "inverse_sqrt", warmup_steps=10, d_model=64)
    lrs = _lrs(sched, 40)
    for n, lr in enumerate(lrs, start=1):
        assert lr == pytest.approx(64**-0.5 * min(n**-0.5, n * 10**-1.5), rel=1e-12)
    assert max(range(40), key=lambda i: lrs[i]) == 9  # update 10 = warmup_steps has the peak


def test_inverse_sqrt_peak_form() -> None:
    sched = build_scheduler(_optimizer(lr=5e-4), "inverse_sqrt", warmup_steps=8)
    lrs = _lrs(sched, 32)
    assert lrs[7] == pytest.approx(5e-4)  # peak at n = w
    assert lrs[0] == pytest.approx(5e-4 / 8)
    assert lrs[31] == pytest.approx(5e-4 * math.sqrt(8 / 32))


@pytest.mark.parametrize("n", [1, 5, 10, 11, 30, 55, 100, 150])
def test_cosine_and_linear_formulas(n: int) -> None:
    w, total, r = 10, 100, 0.1
    if n <= w:
        cos_expected = lin_expected = n / w
    else:
        p = min(1.0, (n - w) / (total - w))
        cos_expected = r + (1 - r) * 0.5 * (1 + math.cos(math.pi * p))
        lin_expected = r + (1 - r) * (1 - p)
    assert WarmupCosineSchedule(w, total, r)(n - 1) == pytest.approx(cos_expected, rel=1e-12)
    assert WarmupLinearSchedule(w, total, r)(n - 1) == pytest.approx(lin_expected, rel=1e-12)


def test_end_points_and_constant() -> None:
    assert WarmupCosineSchedule(10, 100)(99) == pytest.approx(0.0, abs=1e-12)  # update 100 reaches min lr
    assert WarmupLinearSchedule(0, 50, 0.2)(49) == pytest.approx(0.2)
    assert [ConstantSchedule(4)(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert ConstantSchedule()(0) == 1.0


def test_state_saved_and_restored() -> None:
    sched = build_scheduler(_optimizer(lr=1e-3), "cosine", warmup_steps=5, total_steps=50, min_lr_ratio=0.05)
    _lrs(sched, 17)
    state = sched.state_dict()
    assert state["lr_lambdas"][0] == {"warmup_steps": 5, "total_steps": 50, "min_lr_ratio": 0.05}
    # a scheduler built with other parameters takes the saved ones back
    fresh = build_scheduler(_optimizer(lr=1e-3), "cosine", warmup_steps=1, total_steps=10)
    fresh.load_state_dict(state)
    fresh.optimizer.param_groups[0]["lr"] = sched.optimizer.param_groups[0]["lr"]
    assert _lrs(fresh, 10) == _lrs(sched, 10)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="name must be one of"):
        build_scheduler(_optimizer(), "step")
    with pytest.raises(ValueError, match="needs total_steps"):
        build_scheduler(_optimizer(), "cosine", warmup_steps=3)
    with pytest.raises(ValueError, match="warmup_steps must be >= 1"):
        InverseSqrtSchedule(0)
    with pytest.raises(ValueError, match="total_steps must be >="):
        WarmupLinearSchedule(10, 5)
