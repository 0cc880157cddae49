"""kill -9 at random moments of a real `formers train` process, most of them inside checkpoint saves: every restart
resumes, and the run ends with the very weights, losses and best checkpoint of an uninterrupted run."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from formers.files import load_safetensors
from formers.training.best import best_checkpoint
from formers.training.checkpoint import latest_checkpoint, read_trainer_state

STEPS = 40

# Runs `formers train`, killing itself with SIGKILL at the KILL_AT-th fsync/rename (the moments of a save:
# each file's fsync, the directory's rename, the pointers, the pruning). KILL_AT=0: no kill from inside.
DRIVER = """
import os, signal, sys
kill_at, calls = int(os.environ.get("KILL_AT", "0")), [0]
def hooked(real):
    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call
os.replace, os.fsync = hooked(os.replace), hooked(os.fsync)
from formers.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _recipe(tmp_path: Path) -> Path:
    recipe = {
        "name": "digits-kill",
        "task": "image_classification",
        "model": {"name": "vit_mini_28", "patch_size": 4, "embed_dim": 16, "num_layers": 1, "num_heads": 2},
        "data": {"dataset": "digits", "batch_size": 32, "eval_batch_size": 400, "val_size": 100},
        "task_options": {"crop_padding": 1, "hflip": True},
        "optim": {"name": "adamw", "lr": 3e-3, "schedule": "cosine", "warmup_steps": 3},
        "train": {"max_steps": STEPS, "save_every": 1, "keep_last": 2, "eval_every": 3, "best_metric": "acc",
                  "log_every": 1, "device": "cpu", "progress_bar": False, "tensorboard": False},
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


def _start(tmp_path: Path, run_dir: Path, kill_at: int) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    resume = ["--resume"] if (run_dir / "checkpoints" / "latest").exists() else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_AT": str(kill_at),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, str(driver), "train", str(_recipe(tmp_path)), "--run-dir", str(run_dir), *resume]
    return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _losses(run_dir: Path) -> dict[int, str]:
    return {int(r["step"]): r["loss"] for r in csv.DictReader(open(run_dir / "metrics.csv")) if r["loss"]}


def _check_loadable(run_dir: Path) -> None:
    """What a kill may leave: the latest checkpoint complete and readable (or none yet)."""
    latest = latest_checkpoint(run_dir)
    if latest is not None:
        read_trainer_state(latest)
        for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
            load_safetensors(latest / name)


@pytest.mark.slow
def test_kill_9_during_saves_then_resume_gives_the_uninterrupted_run(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    out, _ = (proc := _start(tmp_path, straight, 0)).communicate(timeout=600)
    assert proc.returncode == 0, out

    rng = random.Random(12)
    run, killed, mid_save = tmp_path / "killed", [], 0
    # about 18 fsyncs and renames per step: each inside kill lands in one of the next few steps' saves
    plans = [("inside", rng.randrange(5, 60)) for _ in range(8)] + [("outside", rng.uniform(4.0, 12.0)) for _ in range(2)]
    for where, when in plans:
        proc = _start(tmp_path, run, int(when) if where == "inside" else 0)
        if where == "outside":
            try:
                proc.wait(timeout=when)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
        if proc.returncode == -signal.SIGKILL:
            killed.append((where, when))
            checkpoints = run / "checkpoints"
            mid_save += checkpoints.is_dir() and any(".tmp-" in p.name for p in checkpoints.iterdir())
        else:
            assert proc.returncode == 0, out  # every restart must resume (or finish) cleanly
        _check_loadable(run)
        time.sleep(0.1)
    assert len(killed) >= 8 and mid_save >= 3, (killed, mid_save)  # killed, several times half-way through a save
    proc = _start(tmp_path, run, 0)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out

    final = f"checkpoints/step_{STEPS:08d}"
    expected, got = load_safetensors(straight / final / "model.safetensors"), load_safetensors(run / final / "model.safetensors")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert _losses(run) == _losses(straight) and len(_losses(run)) == STEPS
    state = read_trainer_state(latest_checkpoint(run))
    assert state == read_trainer_state(latest_checkpoint(straight))
    assert read_trainer_state(best_checkpoint(run)).step == state.best_step
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert json.loads((run / "results.json").read_text())["steps"] == STEPS


@pytest.mark.slow
def test_ctrl_c_on_a_real_process_saves_and_prints_the_resume_command(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start(tmp_path, run, 0)
    deadline = time.monotonic() + 300
    while not (run / "metrics.csv").exists() or len(_losses(run)) < 3:  # training is under way
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out
    assert "finishing this step, then saving a checkpoint" in out and "Traceback" not in out
    resume = [line for line in out.splitlines() if line.startswith("resume with: formers train ")]
    assert resume and resume[0].endswith(f"--run-dir {run} --resume"), out
    state = read_trainer_state(latest_checkpoint(run))
    assert 3 <= state.step < STEPS and f"interrupted after step {state.step}; saved" in out
