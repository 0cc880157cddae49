"""``checkpoints/best``: a pointer to the step checkpoint with the best eval metric, and its repair after a crash.

A new best is recorded in the step checkpoint saved for that step (``trainer_state.json``'s ``best_step``), and
only then is ``best`` pointed at it (temporary file, fsync, ``os.replace``), so ``best`` always names a complete
checkpoint; pruning never deletes the one it names. A crash between the two leaves a stale pointer, which
:func:`repair_best` fixes when the run resumes.

Older runs hold a ``best/`` directory (a copy, replaced by two renames). It is still read, turned into a pointer at
the next new best, and recovered from its ``.best.old-*`` / ``.best.tmp-*`` leftovers when a crash came between
those renames.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from formers.files import WEIGHTS_NAME
from formers.training.checkpoint import (
    BEST_NAME,
    TRAINER_STATE_NAME,
    TrainerState,
    checkpoints_dir,
    read_pointer,
    read_trainer_state,
    step_dir_name,
    write_pointer,
)


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The best checkpoint of a run (the step directory ``checkpoints/best`` names, or an older run's ``best/``
    copy), or ``None`` when the run has none.

    Raises:
        ValueError: the pointer is corrupt.
        FileNotFoundError: it names a directory that holds no complete checkpoint.
    """
    path = checkpoints_dir(run_dir) / BEST_NAME
    if path.is_dir():
        if not (path / TRAINER_STATE_NAME).is_file():
            raise FileNotFoundError(f"{path} holds no {TRAINER_STATE_NAME}")
        return path
    return read_pointer(path)


def write_best(run_dir: str | Path, checkpoint: Path) -> Path:
    """Atomically points ``run_dir/checkpoints/best`` at step checkpoint ``checkpoint``; an older run's ``best/``
    copy is moved aside first and deleted after (a crash in between is repaired by :func:`repair_best`)."""
    root = checkpoints_dir(run_dir)
    old = None
    if (root / BEST_NAME).is_dir():
        old = root / f".{BEST_NAME}.old-{os.getpid()}"
        os.replace(root / BEST_NAME, old)
    write_pointer(run_dir, BEST_NAME, checkpoint)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return checkpoint


def _complete(directory: Path) -> bool:
    return directory.is_dir() and (directory / TRAINER_STATE_NAME).is_file() and (directory / WEIGHTS_NAME).is_file()


def _state(directory: Path | None) -> TrainerState | None:
    if directory is None:
        return None
    try:
        return read_trainer_state(directory)
    except (OSError, ValueError, TypeError):
        return None


def repair_best(run_dir: str | Path, state: TrainerState) -> tuple[TrainerState, str | None]:
    """Makes ``checkpoints/best`` agree with ``state`` (the resumed checkpoint's record) and removes leftovers.

    When ``best`` is missing, corrupt or stale, it is pointed at ``step_<best_step>``, recovering that checkpoint
    from an older run's leftover copy if needed. When the recorded best checkpoint is gone altogether, ``state``
    falls back to the checkpoint ``best`` still names (or to no best: the next evaluation starts a new one).

    Returns:
        The state (best fields replaced only when the recorded best is lost) and a message saying what was repaired,
        or ``None`` when nothing needed repair.
    """
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return state, None
    leftovers = sorted(p for p in root.iterdir() if p.name.startswith(f".{BEST_NAME}."))
    try:
        current = best_checkpoint(run_dir)
    except (OSError, ValueError):
        current = None
    current_state = _state(current)
    want = state.best_step
    message = None
    if want is not None and (current_state is None or current_state.step != want):
        target = root / step_dir_name(want)
        if not _complete(target):
            for candidate in (root / BEST_NAME, *leftovers):  # an older run's copy, caught between its renames
                found = _state(candidate) if _complete(candidate) else None
                if found is not None and found.step == want:
                    os.replace(candidate, target)
                    break
        if _complete(target):
            write_best(run_dir, target)
            message = f"repaired {root / BEST_NAME}: it now names {target.name} (best_step={want})"
        elif current_state is not None and current_state.best_step == current_state.step:
            state = dataclasses.replace(state, best_metric=current_state.best_metric, best_step=current_state.step)
            message = (f"the best checkpoint of step {want} is lost; {root / BEST_NAME} keeps step "
                       f"{current_state.step} (best_metric={current_state.best_metric})")
        else:
            if (root / BEST_NAME).is_file():
                (root / BEST_NAME).unlink()
            state = dataclasses.replace(state, best_metric=None, best_step=None)
            message = f"the best checkpoint of step {want} is lost; the next evaluation starts a new best"
    for p in leftovers:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
    return state, message
