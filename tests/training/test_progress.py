"""What a training run tells a person: a bar on a terminal, lines in a log, and why and where it stopped."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

from formers.training import progress
from formers.training.optim import build_optimizer
from formers.training.progress import Progress, stop_message
from formers.training.trainer import Trainer, TrainerConfig


def _fit(tmp_path: Path, make_model, make_loader, task_cls, **config) -> Trainer:
    base = dict(max_steps=6, log_every=2, progress_bar=True, tensorboard=False, device="cpu")
    model = make_model()
    trainer = Trainer(model, task_cls(), make_loader(), TrainerConfig(**{**base, **config}), tmp_path,
                      optimizer=build_optimizer(model, lr=1e-3))
    trainer.fit()
    return trainer


def test_a_log_gets_lines_not_a_bar(tmp_path, make_model, make_loader, task_cls, capsys):
    _fit(tmp_path, make_model, make_loader, task_cls)  # pytest's captured stderr is not a terminal
    out, err = capsys.readouterr()
    assert "it/s" not in err and "\r" not in err  # no tqdm bar redrawn into a log
    steps = re.findall(r"^step (\d+)/6 \(\d+%\)  loss [\d.]+  lr [\d.e+-]+  [\d,]+ tok/s  [\d.]+ min$", out, re.M)
    assert steps == ["2", "4", "6"], out
    assert "train: done, 6 steps (max_steps=6); latest checkpoint " in out
    assert out.rstrip().endswith(str(tmp_path / "checkpoints" / "step_00000006"))


def test_lines_count_what_the_task_counts(tmp_path, make_model, make_loader, task_cls, capsys):
    class ImageTask(task_cls):
        throughput_unit = "img"

    _fit(tmp_path, make_model, make_loader, ImageTask)
    out = capsys.readouterr().out
    assert len(re.findall(r"^step \d+/6 .*  [\d,]+ img/s  ", out, re.M)) == 3 and "tok/s" not in out, out


def test_a_slow_run_still_prints_a_line_every_half_minute(monkeypatch, capsys):
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    bar = Progress(100, 0, bar=True, deadline=1000.0 + 240)  # not a terminal: lines
    for _ in range(3):
        clock[0] += 20.0  # one slow step every 20 s: no metrics row for minutes
        bar.update()
    assert capsys.readouterr().out.splitlines() == [
        "step 2/100 (2%)  0.7 min (3.3 min left of the time budget)",  # 40 s after the start
    ]
    bar.log(3, 2.5, 1e-3, 10.0)
    assert capsys.readouterr().out.startswith("step 3/100 (3%)  loss 2.5000  lr 1.00e-03  10 tok/s  1.0 min")


def test_a_terminal_gets_a_bar():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = Progress(10, 0, bar=True, deadline=time.monotonic() + 60, stream=stream)
    assert bar.live
    bar.update(3)
    bar.log(3, 1.5, 1e-3, 100.0)
    bar.close()
    bar.close()  # idempotent
    assert "3/10" in stream.getvalue()
    assert not Progress(10, 0, bar=False, stream=stream).live
    assert not Progress(10, 0, bar=True, stream=io.StringIO()).live


def test_a_spent_time_budget_says_so(tmp_path, make_model, make_loader, task_cls, capsys):
    trainer = _fit(tmp_path, make_model, make_loader, task_cls, max_steps=100_000, max_minutes=0.003)
    out = capsys.readouterr().out
    step = trainer.state.step
    assert step < 100_000
    assert f"train: stopped by the time budget (max_minutes=0.003) at step {step:,} of 100,000 planned" in out
    assert "--resume" in out
    latest = f"latest checkpoint {tmp_path / 'checkpoints' / f'step_{step:08d}'}" if step else "no checkpoint written"
    assert latest in out


def test_a_time_budget_that_cuts_a_decay_says_so(tmp_path, make_model, make_loader, task_cls, capsys):
    from formers.training.schedules import build_scheduler

    model = make_model()
    optimizer = build_optimizer(model, lr=1e-3)
    config = TrainerConfig(max_steps=100_000, max_minutes=0.02, log_every=2, tensorboard=False, device="cpu")
    trainer = Trainer(model, task_cls(), make_loader(), config, tmp_path, optimizer=optimizer,
                      scheduler=build_scheduler(optimizer, "cosine", warmup_steps=0, total_steps=100_000))
    trainer.fit()
    step = trainer.state.step
    assert 0 < step < 100_000
    assert (f"the learning-rate schedule, planned over max_steps=100,000, was still at 100% of its peak: set "
            f"train.max_steps to about {step:,}") in capsys.readouterr().out


def test_stop_message_names_the_bound_that_ended_the_run():
    assert stop_message(10, 10, None, 0, None, False) == "train: done, 10 steps (max_steps=10)"
    assert stop_message(10, 10, 4.0, 0, None, True) == "train: done, 10 steps (max_steps=10)"  # steps came first
    assert stop_message(7, None, None, 3, 3, False) == "train: done, 3 epochs (max_epochs=3) at step 7"
    assert stop_message(3_012, 100_000, 4.0, 1, None, True).startswith(
        "train: stopped by the time budget (max_minutes=4) at step 3,012 of 100,000 planned"
    )
    # a schedule the budget cut before it decayed: said, with the max_steps this budget held
    undecayed = stop_message(3_012, 100_000, 4.0, 1, None, True, lr_left=0.996)
    assert undecayed.endswith("the learning-rate schedule, planned over max_steps=100,000, was still at 100% of its "
                              "peak: set train.max_steps to about 3,012 for it to decay within this budget on this "
                              "machine")
    assert "learning-rate" not in stop_message(3_012, 3_100, 4.0, 1, None, True, lr_left=0.02)  # nearly decayed
    assert "learning-rate" not in stop_message(3_100, 3_100, 4.0, 1, None, True, lr_left=0.9)  # steps ended it
