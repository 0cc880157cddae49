"""benchmarks/step_profile.py: a recipe's per-step figures are the difference of two fits, so fixed costs cancel."""

from __future__ import annotations

import pytest


def run(steps: int, fixed_ms: float, step_ms: float, kernel_ms: float, launches: int) -> dict:
    """What ``profiled`` reports for a fit of ``steps`` steps costing ``fixed_ms`` besides them (per-step means)."""
    wall = (fixed_ms + steps * step_ms) / steps
    return {"steps": steps, "wall_ms_per_step": wall, "kernel_ms_per_step": kernel_ms,
            "gpu_busy_fraction": kernel_ms / wall, "kernel_launches_per_step": launches, "top_kernels": [],
            "top_host_ops": []}


def test_steady_removes_what_a_fit_costs_besides_its_steps(load_benchmark):
    module = load_benchmark("step_profile")
    # 20 steps of 4 ms (3 ms of kernels) after 500 ms of loading, saving and plotting: 13% busy as measured whole
    short, long = run(20, 500.0, 4.0, 3.0, 100), run(40, 500.0, 4.0, 3.0, 100)
    assert short["gpu_busy_fraction"] == pytest.approx(60 / 580)
    out = module.steady(short, long, 20)
    assert out["wall_ms_per_step"] == pytest.approx(4.0)
    assert out["kernel_ms_per_step"] == pytest.approx(3.0)
    assert out["gpu_busy_fraction"] == pytest.approx(0.75)
    assert out["kernel_launches_per_step"] == pytest.approx(100)
    assert out["with_fit_overheads"]["short"]["gpu_busy_fraction"] == pytest.approx(60 / 580)
