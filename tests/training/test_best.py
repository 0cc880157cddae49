"""``checkpoints/best`` (a link to a step checkpoint, or a copy where links are unavailable) is as crash-safe as the step checkpoints: a crash or a failed write at any rename leaves
a best that resume repairs, older runs' ``best/`` directories still load, and their crash leftovers are recovered."""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

import formers
from formers.training.best import best_checkpoint, repair_best
from formers.training.checkpoint import latest_checkpoint, read_trainer_state
from formers.training.optim import build_optimizer
from formers.training.trainer import Trainer, TrainerConfig

STEPS = 4


pytestmark = pytest.mark.usefixtures("no_plots")

class _Killed(BaseException):
    """Stands for the process dying: no ``except Exception`` catches it."""


def _scripted(task_cls, scores):
    scores = iter(scores)

    class Scripted(task_cls):
        def evaluate(self, model, loader):
            return {"bleu": next(scores, 0.0)}

    return Scripted()


def _trainer(run_dir: Path, make_model, make_loader, task, **overrides) -> Trainer:
    base = dict(max_steps=STEPS, eval_every=1, save_every=2, keep_last=1, best_metric="bleu", best_mode="max",
                log_every=1, progress_bar=False, tensorboard=False, device="cpu")
    config = TrainerConfig(**{**base, **overrides})
    model = make_model(seed=0)
    return Trainer(model, task, make_loader(), config, run_dir, optimizer=build_optimizer(model, lr=1e-3),
                   eval_loader=[None])


def _assert_best_consistent(run_dir: Path, state) -> None:
    root = run_dir / "checkpoints"
    assert read_trainer_state(latest_checkpoint(run_dir)).best_step == state.best_step
    best = best_checkpoint(run_dir)
    if state.best_step is None:
        assert best is None
    else:
        saved = read_trainer_state(best)
        assert (saved.step, saved.best_metric) == (state.best_step, state.best_metric)
        assert formers.from_pretrained(root / "best").config.embed_dim == 32
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


def _count_renames(tmp_path: Path, make_model, make_loader, task_cls, links: bool = True) -> int:
    calls = []
    real = os.replace

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        if not links:
            mp.setattr(os, "symlink", _no_links)
        mp.setattr(os, "replace", counting)
        _trainer(tmp_path, make_model, make_loader, _scripted(task_cls, [1.0, 2.0, 3.0, 4.0])).fit()
    return len(calls)


def _no_links(*args, **kwargs):
    raise OSError(errno.EPERM, "symbolic links are not available")


def _crash_and_resume(
    run_dir: Path, make_model, make_loader, task_cls, fail_at: int, error: BaseException, links: bool = True
) -> None:
    """Trains with every evaluation a new best, failing at the ``fail_at``-th ``os.replace``, then resumes with
    evaluations that never improve (so nothing but the repair can fix ``best``) and checks it. ``links=False``:
    where symbolic links cannot be made (``best/`` is then a copy)."""
    calls = [0]
    real = os.replace

    def failing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == fail_at:
            raise error
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        if not links:
            mp.setattr(os, "symlink", _no_links)
        mp.setattr(os, "replace", failing)
        with pytest.raises(type(error)):
            _trainer(run_dir, make_model, make_loader, _scripted(task_cls, [1.0, 2.0, 3.0, 4.0])).fit()
        mp.setattr(os, "replace", real)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the repair says what it did
            state = _trainer(run_dir, make_model, make_loader, _scripted(task_cls, [])).fit(resume=True)
    assert state.step == STEPS
    _assert_best_consistent(run_dir, state)
    assert (run_dir / "checkpoints" / "best").is_symlink() == (links and state.best_step is not None)


# A crash (kill) or a failed write (disk full, read-only) at a rename of a run whose evaluations all improve; the
# renames of that run, in order: metrics.csv x3, then per step: step dir, latest, [a pruned dir], best.
_ERRORS = {"killed": _Killed(), "disk full": OSError(errno.ENOSPC, "No space left on device"),
           "read-only": OSError(errno.EROFS, "Read-only file system")}


@pytest.mark.parametrize("error", sorted(_ERRORS))
@pytest.mark.parametrize("fail_at", [5, 9, 12, 17])  # latest, best moved, a pruning, the last best
def test_a_failure_while_saving_a_new_best_is_repaired_on_resume(
    tmp_path: Path, make_model, make_loader, task_cls, fail_at: int, error: str
) -> None:
    _crash_and_resume(tmp_path, make_model, make_loader, task_cls, fail_at, _ERRORS[error])


@pytest.mark.parametrize("fail_at", [14, 16, 20])  # without links: the second rename of a best/ copy, pruning
def test_without_symbolic_links_a_failure_while_copying_best_is_repaired(
    tmp_path: Path, make_model, make_loader, task_cls, fail_at: int
) -> None:
    _crash_and_resume(tmp_path, make_model, make_loader, task_cls, fail_at, _Killed(), links=False)


@pytest.mark.slow
@pytest.mark.parametrize("links", [True, False])
def test_a_failure_at_every_rename_is_repaired_on_resume(
    tmp_path: Path, make_model, make_loader, task_cls, links: bool
) -> None:
    total = _count_renames(tmp_path / "count", make_model, make_loader, task_cls, links)
    assert total >= 10
    for fail_at in range(1, total + 1):
        for name, error in _ERRORS.items():
            _crash_and_resume(tmp_path / f"{fail_at}-{name}", make_model, make_loader, task_cls, fail_at, error, links)


def test_best_is_a_pointer_never_pruned(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    # best at step 1 (evaluated between saves): saved as its own step checkpoint, kept although keep_last=1
    state = _trainer(tmp_path, make_model, make_loader, _scripted(task_cls, [5.0, 1.0, 2.0, 3.0])).fit()
    root = tmp_path / "checkpoints"
    assert (state.best_step, state.best_metric) == (1, 5.0)
    assert os.readlink(root / "best") == "step_00000001"
    assert sorted(p.name for p in root.iterdir()) == ["best", "latest", "step_00000001", "step_00000004"]
    model = formers.from_pretrained(root / "best")
    saved = formers.from_pretrained(root / "step_00000001")
    for (k, a), b in zip(model.state_dict().items(), saved.state_dict().values()):
        assert torch.equal(a, b), k


def test_an_older_runs_best_directory_loads_and_becomes_a_pointer(
    tmp_path: Path, make_model, make_loader, task_cls
) -> None:
    _trainer(tmp_path, make_model, make_loader, _scripted(task_cls, [1.0, 2.0, 1.0, 1.0])).fit()
    root = tmp_path / "checkpoints"
    (root / "best").unlink()
    shutil.copytree(root / "step_00000002", root / "best")  # how runs were written before best was a pointer
    shutil.rmtree(root / "step_00000002")
    assert best_checkpoint(tmp_path) == root / "best"
    assert formers.from_pretrained(root / "best").config.embed_dim == 32
    _, message = repair_best(tmp_path, read_trainer_state(latest_checkpoint(tmp_path)))
    assert message is None and (root / "best").is_dir()  # consistent: left as it is

    state = _trainer(tmp_path, make_model, make_loader, _scripted(task_cls, [9.0]), max_steps=6).fit(resume=True)
    assert state.best_step == 5 and os.readlink(root / "best") == "step_00000005"
    _assert_best_consistent(tmp_path, state)


def test_an_older_runs_crash_between_its_renames_is_recovered(
    tmp_path: Path, make_model, make_loader, task_cls
) -> None:
    _trainer(tmp_path, make_model, make_loader, _scripted(task_cls, [1.0, 2.0, 9.0, 1.0])).fit()
    root = tmp_path / "checkpoints"
    state = read_trainer_state(latest_checkpoint(tmp_path))
    assert state.best_step == 3
    # Older runs copied a best evaluated between saves into best/ only, replacing it by two renames; killed in
    # between, best/ is gone, the previous copy sits in .best.old-*, the new one (the only copy) in .best.tmp-*.
    (root / "best").unlink()
    os.replace(root / "step_00000003", root / ".best.tmp-abc123")
    shutil.copytree(root / "step_00000004", root / ".best.old-4242")
    with pytest.warns(UserWarning, match="step_00000003"):
        resumed = _trainer(tmp_path, make_model, make_loader, _scripted(task_cls, [])).fit(resume=True)
    assert (resumed.best_step, resumed.best_metric) == (3, 9.0)
    assert best_checkpoint(tmp_path) == root / "step_00000003"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_a_lost_best_falls_back_to_what_best_still_names(tmp_path: Path, make_model, make_loader, task_cls) -> None:
    _trainer(tmp_path, make_model, make_loader, _scripted(task_cls, [1.0, 2.0, 3.0, 4.0]), keep_last=4).fit()
    root = tmp_path / "checkpoints"
    state = read_trainer_state(latest_checkpoint(tmp_path))
    assert state.best_step == 4
    (root / "best").unlink()
    os.symlink("step_00000002", root / "best")  # stale
    shutil.rmtree(root / "step_00000003")
    lost = read_trainer_state(root / "step_00000002")
    shutil.rmtree(root / "step_00000004")  # the recorded best is gone (latest with it: repair alone is checked)
    repaired, message = repair_best(tmp_path, state)
    assert "lost" in message and (repaired.best_step, repaired.best_metric) == (2, lost.best_metric)
    (root / "best").unlink()
    repaired, message = repair_best(tmp_path, state)
    assert "new best" in message and (repaired.best_step, repaired.best_metric) == (None, None)
