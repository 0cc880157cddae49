"""benchmarks/step_profile.py: per-step kernels are the difference of two fits (fixed costs cancel); the wall time
is clocked between steps."""

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


def test_a_clocked_wall_time_is_used_where_the_fits_fixed_costs_varied(load_benchmark):
    module = load_benchmark("step_profile")
    # the short fit's workers took 1.5 s to start, the long one's 0.2 s: the difference goes negative
    short, long = run(60, 1500.0, 4.0, 3.0, 100), run(120, 200.0, 4.0, 3.0, 100)
    assert module.steady(short, long, 60)["wall_ms_per_step"] < 0
    out = module.steady(short, long, 60, clocked_ms=4.0)
    assert out["wall_ms_per_step"] == 4.0 and out["wall_ms_per_step_fit_difference"] < 0
    assert out["gpu_busy_fraction"] == pytest.approx(0.75)


def test_the_step_clock_times_the_steps_between_the_skipped_ones_and_the_last(load_benchmark):
    import torch

    module = load_benchmark("step_profile")
    now = [0.0]

    class Trainer:
        def _optimizer_step(self, loss, window):
            now[0] += 0.004  # 4 ms a step
            return loss

    trainer = Trainer()
    original = trainer._optimizer_step
    clock = module.StepClock(trainer, torch.device("cpu"), steps=10, skip=2, clock=lambda: now[0])
    now[0] += 3.0  # a fit's fixed cost before its first step: outside the clocked steps
    for _ in range(10):
        assert trainer._optimizer_step("loss", None) == "loss"
    now[0] += 5.0  # and after its last
    assert clock.ms_per_step() == pytest.approx(4.0)
    assert trainer._optimizer_step == original  # put back after the last step
    unfinished = module.StepClock(Trainer(), torch.device("cpu"), steps=10)
    assert unfinished.ms_per_step() is None
    with pytest.raises(ValueError, match="skip"):
        module.StepClock(Trainer(), torch.device("cpu"), steps=3, skip=3)
