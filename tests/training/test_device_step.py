"""The device-decided non-finite skip gives, on CPU, bit for bit what the host-decided step gave: losses, weights,
optimizer and schedule state, BatchNorm buffers, counters and checkpoint files, with injected nan/inf losses, for
the per-parameter, fused (``found_inf``) and ``torch.where`` optimizer paths, and across a resume."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from formers.training.device_step import (
    DeviceFeed,
    DeviceSkipStep,
    PendingSteps,
    is_fused_adam,
)
from formers.training.schedules import build_scheduler
from formers.training.task import StepOutput
from formers.training.trainer import NonFiniteLossError, Trainer, TrainerConfig

pytestmark = pytest.mark.usefixtures("no_plots", "decide_on_the_device")


@pytest.fixture
def decide_on_the_device(monkeypatch) -> None:
    """The device-decided step on a CPU too (off by default there: it would only cost copies)."""
    monkeypatch.setattr(DeviceSkipStep, "on_cpu", True)


class HostDecidedTrainer(Trainer):
    """The reference: the optimizer step as it was before the device-decided skip (one host read per step, the
    scheduler stepped at once, buffers restored on the host)."""

    def _optimizer_step(self, loss: Tensor, window: Any) -> None:
        cfg, state = self.config, self.state
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(self.params, cfg.max_grad_norm, norm)
        loss_value, norm_value = torch.stack([loss, norm.float()]).tolist()
        window.losses.append(loss_value)
        window.norms.append(norm_value)
        if math.isfinite(loss_value) and math.isfinite(norm_value):
            if self.scaler.is_enabled():
                self.scaler.step(self.optimizer)
            else:
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            state.consecutive_nonfinite = 0
        else:
            self._buffers.restore()
            state.total_nonfinite += 1
            if not self.scaler.is_enabled() or not math.isfinite(loss_value):
                state.consecutive_nonfinite += 1
            if state.consecutive_nonfinite >= cfg.max_consecutive_nonfinite:
                raise NonFiniteLossError(f"ending at step {state.step + 1}")
        if self.scaler.is_enabled():
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(6, 16)
        self.norm = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.norm(self.fc1(x))))


class Loader:
    """``num_batches`` batches per epoch; batch ``i`` of epoch ``e`` carries ``poison.get(e * num_batches + i)``."""

    def __init__(self, poison: dict[int, float], num_batches: int = 6) -> None:
        self.poison, self.num_batches, self.epoch = poison, num_batches, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        g = torch.Generator().manual_seed(self.epoch)
        for i in range(self.num_batches):
            yield {"x": torch.randn(8, 6, generator=g), "y": torch.randint(0, 3, (8,), generator=g),
                   "poison": self.poison.get(self.epoch * self.num_batches + i)}


class PoisonTask:
    """Cross-entropy; a poisoned batch multiplies the BatchNorm input by its value (nan/inf), so the statistics
    the forward pass updates are poisoned too."""

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        x, poison = batch["x"], batch["poison"]
        if isinstance(poison, float):
            x = x * poison
        loss = F.cross_entropy(model(x), batch["y"])
        if poison == "grad":  # the same loss, with a gradient of 2**40 on a bias (which loss scaling overflows)
            bias = model.fc2.bias.sum()
            loss = loss + 2.0**40 * (bias - bias.detach())
        return StepOutput(loss=loss, num_tokens=len(batch["y"]))

    def evaluate(self, model: nn.Module, loader: Any) -> dict[str, float]:
        return {}


OPTIMIZERS = {
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-2),
    "adamw_fused": lambda params: torch.optim.AdamW(params, lr=1e-2, fused=True),
    "sgd_momentum": lambda params: torch.optim.SGD(params, lr=1e-1, momentum=0.9),
}
POISON = {0: math.nan, 3: math.inf, 4: -math.inf, 9: math.nan}  # optimizer steps 1, 4, 5 (accum 1) and 10


def _fit(cls: type[Trainer], run_dir: Path, optimizer: str, resume: bool = False, device: str = "cpu",
         scaler: bool = False, poison: dict[int, Any] = POISON, **overrides: Any) -> Trainer:
    model = BatchNormNet().to(device)
    opt = OPTIMIZERS[optimizer](model.parameters())
    scheduler = build_scheduler(opt, "inverse_sqrt", warmup_steps=3)
    config = TrainerConfig(**{"max_steps": 12, "log_every": 1, "save_every": 4, "keep_last": 10, "progress_bar": False,
                              "tensorboard": False, "device": device, "max_grad_norm": 1.0,
                              "max_consecutive_nonfinite": 3, **overrides})
    trainer = cls(model, PoisonTask(), Loader(poison), config, run_dir, optimizer=opt, scheduler=scheduler)
    if scaler:  # fp16's loss scaling (the Trainer allows fp16 on CUDA only; the scaler itself runs on a CPU)
        trainer.scaler = torch.amp.GradScaler(device, init_scale=2.0**100, growth_interval=2)
    trainer.fit(resume=resume)
    return trainer


def _losses(run_dir: Path) -> dict[int, tuple[str, ...]]:
    """metrics.csv's training rows: step -> (loss, grad norm, learning rate, non-finite skips so far)."""
    with open(run_dir / "metrics.csv", newline="") as fh:
        return {int(r["step"]): (r["loss"], r["grad_norm"], r["lr"], r["nonfinite_skips"])
                for r in csv.DictReader(fh) if r["lr"]}


def _assert_same_run(a: Trainer, b: Trainer) -> None:
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"] and sa["state"].keys() == sb["state"].keys() and sa["state"]
    for k in sa["state"]:
        for name, v in sa["state"][k].items():
            assert torch.equal(v, sb["state"][k][name]), (k, name)
    assert a.scheduler.state_dict() == b.scheduler.state_dict()
    assert (a.state.step, a.state.total_nonfinite, a.state.consecutive_nonfinite) == (
        b.state.step, b.state.total_nonfinite, b.state.consecutive_nonfinite)


def _checkpoint_files(run_dir: Path) -> dict[str, bytes]:
    root = run_dir / "checkpoints"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_device_decided_skips_match_the_host_decided_run_bit_for_bit(tmp_path: Path, optimizer: str) -> None:
    ref = _fit(HostDecidedTrainer, tmp_path / "ref", optimizer, log_every=5)
    new = _fit(Trainer, tmp_path / "new", optimizer, log_every=5)  # reads at steps 4, 5, 8, 10, 12 only
    assert ref.state.total_nonfinite == 4
    assert is_fused_adam(new.optimizer) == (optimizer == "adamw_fused")
    _assert_same_run(ref, new)
    assert list(_losses(tmp_path / "new")) == [5, 10, 12]
    assert _losses(tmp_path / "ref") == _losses(tmp_path / "new")
    assert _checkpoint_files(tmp_path / "ref") == _checkpoint_files(tmp_path / "new")


def test_the_new_step_matches_the_reference_loss_by_loss_and_across_a_resume(tmp_path: Path) -> None:
    ref = _fit(HostDecidedTrainer, tmp_path / "ref", "adamw")
    _fit(Trainer, tmp_path / "new", "adamw", max_steps=6)  # stops after step 6, saved at 4 and 6
    resumed = _fit(Trainer, tmp_path / "new", "adamw", resume=True, log_every=3)
    _assert_same_run(ref, resumed)
    new_losses = _losses(tmp_path / "new")
    assert list(new_losses) == list(range(1, 7)) + [9, 12]
    ref_losses = _losses(tmp_path / "ref")
    assert [new_losses[s][0] for s in range(1, 7)] == [ref_losses[s][0] for s in range(1, 7)]
    assert new_losses[12][2:] == ref_losses[12][2:]  # the learning rate and the skips count
    ref_files, new_files = _checkpoint_files(tmp_path / "ref"), _checkpoint_files(tmp_path / "new")
    assert {k: new_files[k] for k in ref_files} == ref_files  # steps 4, 8 and 12 (the resumed run also has 6)


def test_the_host_reads_only_at_log_checkpoint_and_stop_steps(tmp_path: Path, monkeypatch) -> None:
    reads: list[int] = []
    read = PendingSteps.read

    def counting(self: PendingSteps, extra: Tensor | None = None) -> Any:
        reads.append(len(self))
        return read(self, extra)

    monkeypatch.setattr(PendingSteps, "read", counting)
    _fit(Trainer, tmp_path, "adamw", log_every=5, save_every=0)
    # steps 1 (skipped: nan) and 2 are decided on the host, until the optimizer has created its state; the device
    # decides steps 3-12, which the host reads in three batches: at the log rows of steps 5 and 10 and at the end
    assert reads == [3, 5, 2]


def test_a_run_of_non_finite_steps_is_reported_at_the_step_that_reached_the_limit(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match="ending at step 5"):
        _fit(HostDecidedTrainer, tmp_path / "ref", "adamw", max_consecutive_nonfinite=2)
    with pytest.raises(NonFiniteLossError, match=r"ending at step 5, detected after step 8\)"):
        _fit(Trainer, tmp_path / "new", "adamw", max_consecutive_nonfinite=2, log_every=8, save_every=0)


def test_on_cpu_the_feed_hands_the_batch_over_as_it_is() -> None:
    batch = {"x": torch.ones(2, 3), "pairs": [torch.zeros(2), 5], "name": "b"}
    moved = DeviceFeed(torch.device("cpu"))(batch)
    assert moved["x"] is batch["x"] and moved["pairs"][0] is batch["pairs"][0] and moved["pairs"][1] == 5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_feed_copies_nested_batches_from_pinned_memory() -> None:
    batch = {"x": torch.randn(4, 3), "pairs": (torch.arange(5), 7), "name": "b"}
    moved = DeviceFeed(torch.device("cuda"))(batch)
    assert moved["x"].is_cuda and moved["pairs"][0].is_cuda and moved["pairs"][1] == 7 and moved["name"] == "b"
    assert torch.equal(moved["x"].cpu(), batch["x"]) and torch.equal(moved["pairs"][0].cpu(), batch["pairs"][0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("optimizer", ["adamw_fused", "sgd_momentum"])
def test_on_cuda_the_device_decided_skip_matches_the_host_decided_run(tmp_path: Path, optimizer: str) -> None:
    ref = _fit(HostDecidedTrainer, tmp_path / "ref", optimizer, device="cuda", log_every=5, deterministic=True)
    new = _fit(Trainer, tmp_path / "new", optimizer, device="cuda", log_every=5, deterministic=True)
    assert ref.state.total_nonfinite == 4
    _assert_same_run(ref, new)
    assert _losses(tmp_path / "ref") == _losses(tmp_path / "new")


def test_on_a_cpu_the_host_decides_by_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(DeviceSkipStep, "on_cpu", False)
    reads: list[int] = []
    monkeypatch.setattr(PendingSteps, "add", lambda self, step, values: reads.append(step))
    ref = _fit(HostDecidedTrainer, tmp_path / "ref", "adamw", log_every=5)
    new = _fit(Trainer, tmp_path / "new", "adamw", log_every=5)
    assert reads == []
    _assert_same_run(ref, new)


@pytest.mark.parametrize("optimizer", ["adamw", "adamw_fused"])
def test_with_loss_scaling_overflows_and_non_finite_losses_match_the_host_decided_run(tmp_path: Path,
                                                                                    optimizer: str) -> None:
    poison = {**POISON, 6: "grad", 7: "grad", 8: "grad", 10: "grad"}  # finite losses whose scaled gradients overflow
    ref = _fit(HostDecidedTrainer, tmp_path / "ref", optimizer, scaler=True, poison=poison, log_every=5)
    new = _fit(Trainer, tmp_path / "new", optimizer, scaler=True, poison=poison, log_every=5)
    # 8 skips; the overflows (three in a row among them) do not count towards max_consecutive_nonfinite=3
    assert ref.state.total_nonfinite == 8
    _assert_same_run(ref, new)
    assert ref.scaler.state_dict() == new.scaler.state_dict()
    assert _losses(tmp_path / "ref") == _losses(tmp_path / "new")
    assert _checkpoint_files(tmp_path / "ref") == _checkpoint_files(tmp_path / "new")
