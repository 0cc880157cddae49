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


class FakeGraphs:
    """Step graphs that capture a new shape at each of the steps in ``new_at`` (cumulative step counts)."""

    def __init__(self, new_at: list[int]) -> None:
        self.new_at, self.steps, self.captured = new_at, 0, 0


class FakeTrainer:
    def __init__(self, graphs: FakeGraphs | None) -> None:
        self._step_graphs = graphs

    def more(self, n: int) -> None:
        g = self._step_graphs
        g.captured += sum(g.steps < at <= g.steps + n for at in g.new_at)
        g.steps += n


def test_settle_warms_up_until_a_chunk_captures_no_new_shape(load_benchmark):
    module = load_benchmark("step_profile")
    trainer = FakeTrainer(FakeGraphs([3, 40, 120, 130]))
    # chunks of 50: 1-50 (2 new), 51-100 (none): stops after 100 steps although a shape comes at 120
    assert module.settle(trainer, trainer.more, 50, 2000) == 100
    trainer = FakeTrainer(FakeGraphs([10 * i for i in range(1, 100)]))
    assert module.settle(trainer, trainer.more, 50, 200) == 200  # never settles: capped
    assert module.settle(FakeTrainer(None), None, 50, 2000) == 0  # no graphs: nothing to wait for
    assert module.graph_counts(FakeTrainer(None)) == {}
