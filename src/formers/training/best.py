"""``checkpoints/best``: a link to the step checkpoint with the best eval metric, and its repair after a crash.

A new best is recorded in the step checkpoint saved for that step (``trainer_state.json``'s ``best_step``), and
only then is ``best`` pointed at it: a relative symbolic link ``best -> step_00001234`` made under a temporary
name and renamed over the old one (one atomic ``os.replace``), so ``best`` always names a complete checkpoint and
reads as a directory everywhere (``from_pretrained``, tokenizer and preprocessing loaders, ``ls``). Pruning never
deletes the step it names. A crash between the save and the rename leaves a stale link, which
:func:`repair_best` fixes when the run resumes.

Where symbolic links cannot be made (Windows without the privilege), and in runs written before, ``best/`` is a
directory: a copy (hard links), replaced by two renames. It is still read, turned into a link at the next new best
where links work, and recovered from its ``.best.old-*`` / ``.best.tmp-*`` leftovers when a crash came between
those renames.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from formers.files import WEIGHTS_NAME, fsync_dir
from formers.training.checkpoint import (
    BEST_NAME,
    MAX_POINTER_BYTES,
    TRAINER_STATE_NAME,
    TrainerState,
    checkpoints_dir,
    copy_checkpoint,
    read_trainer_state,
    step_dir_name,
)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The best checkpoint of a run (the step directory ``checkpoints/best`` links to, or a ``best/`` copy), or
    ``None`` when the run has none.

    Raises:
        ValueError: the link does not name a directory beside it.
        FileNotFoundError: it names one that holds no complete checkpoint.
    """
    path = checkpoints_dir(run_dir) / BEST_NAME
    if path.is_symlink():
        name = os.readlink(path)
        if len(name) > MAX_POINTER_BYTES or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"{path} must link to a checkpoint directory beside it, got {name[:60]!r}")
        target = path.parent / name
    elif path.is_dir():
        target = path
    else:
        return None
    if not (target / TRAINER_STATE_NAME).is_file():
        raise FileNotFoundError(f"{path} names {target}, which holds no {TRAINER_STATE_NAME}")
    return target


def write_best(run_dir: str | Path, checkpoint: Path) -> Path:
    """Atomically points ``run_dir/checkpoints/best`` at step checkpoint ``checkpoint`` (see the module docstring;
    an older ``best/`` copy is moved aside first and deleted after, a crash in between is repaired by
    :func:`repair_best`). Returns the path of ``best``."""
    root = checkpoints_dir(run_dir)
    best, tmp = root / BEST_NAME, root / f".{BEST_NAME}.tmp-link-{os.getpid()}"
    _remove(tmp)
    try:
        os.symlink(checkpoint.name, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):  # no symbolic links here: a copy, replaced by atomic_directory
        return copy_checkpoint(checkpoint, best)
    old = None
    if best.is_dir() and not best.is_symlink():
        old = root / f".{BEST_NAME}.old-{os.getpid()}"
        os.replace(best, old)
    os.replace(tmp, best)
    fsync_dir(root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return best


def _complete(directory: Path) -> bool:
    return (not directory.is_symlink() and directory.is_dir() and (directory / TRAINER_STATE_NAME).is_file()
            and (directory / WEIGHTS_NAME).is_file())


def _state(directory: Path | None) -> TrainerState | None:
    if directory is None:
        return None
    try:
        return read_trainer_state(directory)
    except (OSError, ValueError, TypeError):
        return None


def repair_best(run_dir: str | Path, state: TrainerState) -> tuple[TrainerState, str | None]:
    """Makes ``checkpoints/best`` agree with ``state`` (the resumed checkpoint's record) and removes leftovers.

    When ``best`` is missing, broken or stale, it is pointed at ``step_<best_step>``, recovering that checkpoint
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
            if (root / BEST_NAME).is_symlink():
                (root / BEST_NAME).unlink()
            state = dataclasses.replace(state, best_metric=None, best_step=None)
            message = f"the best checkpoint of step {want} is lost; the next evaluation starts a new best"
    for p in leftovers:
        _remove(p)
    return state, message
