"""Ctrl-C saves the run: the last complete step is checkpointed (a step interrupted half-way is rewound), the
resumed run equals the uninterrupted one bit for bit, and a second Ctrl-C during that save corrupts nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from formers.training.checkpoint import latest_checkpoint, read_trainer_state
from formers.training.interrupt import TrainingInterrupted
from formers.training.optim import build_optimizer
from formers.training.schedules import build_scheduler
from formers.training.task import StepOutput
from formers.training.trainer import Trainer, TrainerConfig

pytestmark = pytest.mark.usefixtures("no_plots")


class BatchNormNet(nn.Module):
    """Conv -> BatchNorm -> dropout -> linear: buffers a partial forward pass changes, and dropout's RNG."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(F.relu(self.norm(self.conv(x)))).flatten(1))


class Loader:
    """6 batches per epoch, reshuffled per epoch; ``interrupt_at`` (a count of batches handed out over the run)
    raises KeyboardInterrupt there, as Ctrl-C inside a data loader does."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        self.images, self.labels = torch.randn(24, 1, 6, 6, generator=g), torch.randint(0, 3, (24,), generator=g)
        self.epoch, self.handed_out, self.interrupt_at = 0, 0, interrupt_at

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(24, generator=torch.Generator().manual_seed(self.epoch))
        for i in range(6):
            self.handed_out += 1
            if self.handed_out == self.interrupt_at:
                raise KeyboardInterrupt
            idx = order[4 * i: 4 * i + 4]
            yield {"images": self.images[idx], "labels": self.labels[idx]}


class Task:
    """Cross-entropy; ``on_call`` maps a training_step call number (1-based) to what happens after its forward pass:
    ``"raise"`` (KeyboardInterrupt with the BatchNorm statistics already updated) or ``"sigint"`` (a real Ctrl-C)."""

    def __init__(self, on_call: dict[int, str] | None = None) -> None:
        self.calls, self.on_call = 0, on_call or {}

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        self.calls += 1
        loss = F.cross_entropy(model(batch["images"]), batch["labels"])
        action = self.on_call.get(self.calls)
        if action == "raise":
            raise KeyboardInterrupt
        if action == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        return StepOutput(loss=loss, num_tokens=4)

    def evaluate(self, model: nn.Module, loader: Any) -> dict[str, float]:
        return {}


def _trainer(run_dir: Path, task: Task, loader: Loader, **overrides) -> Trainer:
    base = dict(max_steps=10, save_every=4, keep_last=5, log_every=1, progress_bar=False, tensorboard=False,
                device="cpu")
    model = BatchNormNet()
    optimizer = build_optimizer(model, lr=1e-2)
    return Trainer(model, task, loader, TrainerConfig(**{**base, **overrides}), run_dir, optimizer=optimizer,
                   scheduler=build_scheduler(optimizer, "inverse_sqrt", warmup_steps=3))


def _assert_same(a: Trainer, b: Trainer) -> None:
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for k in sa["state"]:
        for name, v in sa["state"][k].items():
            assert torch.equal(v, sb["state"][k][name]), (k, name)
    assert a.scheduler.state_dict() == b.scheduler.state_dict()


def _straight(tmp_path: Path, **overrides) -> Trainer:
    trainer = _trainer(tmp_path / "straight", Task(), Loader(), **overrides)
    trainer.fit()
    return trainer


def _resume(run_dir: Path, **overrides) -> Trainer:
    torch.manual_seed(1234)  # the resumed run depends on nothing but the checkpoint
    trainer = _trainer(run_dir, Task(), Loader(), **overrides)
    assert trainer.fit(resume=True).step == 10
    return trainer


@pytest.mark.parametrize(
    "accum, where, at, saved_step",
    [
        (1, "loader", 7, 6),  # the loader raises fetching step 7's batch: step 6 is saved (save_every=4: new)
        (1, "task", 7, 6),  # after step 7's forward pass (BatchNorm statistics updated): rewound, step 6 saved
        (2, "loader", 12, 5),  # the second micro-batch of step 6
        (2, "task", 13, 6),  # the first micro-batch of step 7, across an epoch boundary
    ],
)
def test_a_keyboard_interrupt_saves_the_last_complete_step_and_resume_is_exact(
    tmp_path: Path, accum: int, where: str, at: int, saved_step: int
) -> None:
    straight = _straight(tmp_path, grad_accum_steps=accum)
    run = tmp_path / "interrupted"
    task, loader = (Task({at: "raise"}), Loader()) if where == "task" else (Task(), Loader(interrupt_at=at))
    with pytest.raises(TrainingInterrupted) as info:
        _trainer(run, task, loader, grad_accum_steps=accum).fit()
    assert info.value.step == saved_step and info.value.checkpoint == latest_checkpoint(run)
    assert read_trainer_state(info.value.checkpoint).step == saved_step
    _assert_same(straight, _resume(run, grad_accum_steps=accum))


def test_ctrl_c_finishes_the_step_saves_it_and_says_so(tmp_path: Path, capfd) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    straight = _straight(tmp_path)
    run = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted) as info:
        _trainer(run, Task({3: "sigint"}), Loader()).fit()
    assert info.value.step == 3 and info.value.checkpoint.name == "step_00000003"  # the step in flight completed
    assert "finishing this step, then saving a checkpoint" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    _assert_same(straight, _resume(run))


def test_a_second_ctrl_c_during_the_save_keeps_the_last_checkpoint(tmp_path: Path, monkeypatch) -> None:
    from formers.training import checkpoint

    straight = _straight(tmp_path)
    run = tmp_path / "interrupted"
    real = checkpoint.save_state

    def second_ctrl_c(directory, name, state):  # Ctrl-C again in the middle of writing the step-6 checkpoint
        if directory.name.startswith(".step_00000006"):
            os.kill(os.getpid(), signal.SIGINT)
        return real(directory, name, state)

    monkeypatch.setattr(checkpoint, "save_state", second_ctrl_c)
    with pytest.raises(TrainingInterrupted) as info:
        _trainer(run, Task({6: "sigint"}), Loader()).fit()
    assert info.value.checkpoint is None and info.value.latest == run / "checkpoints" / "step_00000004"
    assert latest_checkpoint(run).name == "step_00000004"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_00000004"]
    monkeypatch.setattr(checkpoint, "save_state", real)
    _assert_same(straight, _resume(run))


def test_an_interrupt_before_the_first_step_saves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TrainingInterrupted) as info:
        _trainer(tmp_path, Task(), Loader(interrupt_at=1)).fit()
    assert (info.value.step, info.value.checkpoint, info.value.latest) == (0, None, None)
    assert latest_checkpoint(tmp_path) is None
