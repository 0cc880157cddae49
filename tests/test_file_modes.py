"""Saved models, checkpoints and averaged weights get the modes the user's umask gives any new file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import formers
from formers.files import atomic_file, current_umask
from formers.training.checkpoint import (
    TrainerState,
    average_run_checkpoints,
    save_checkpoint,
)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.fixture(params=[0o022, 0o077, 0o002, 0o027], ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_current_umask_reads_without_changing_it(umask):
    assert current_umask() == umask and current_umask() == umask


def test_saved_model_run_and_average_follow_the_umask(tmp_path, umask):
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    model = formers.create_model("gpt_mini", vocab_size=32, eos_id=None, embed_dim=16, num_heads=2, num_layers=1,
                                 max_seq_len=8)
    saved = formers.save_pretrained(model, tmp_path / "model")
    run = tmp_path / "run"
    for step in (1, 2):
        save_checkpoint(run, model, TrainerState(step=step))
    average_run_checkpoints(run, 2, run / "averaged")
    with atomic_file(tmp_path / "note.txt") as tmp:
        tmp.write_text("hi")
    for root in (saved, run, tmp_path / "note.txt"):
        modes = _modes(root)
        for name, mode in modes.items():
            is_dir = (root / name).is_dir() if name != "." else root.is_dir()
            assert mode == (dir_mode if is_dir else file_mode), (root, name, oct(mode))
    assert {"model.safetensors", "config.json"} <= {p.name for p in saved.iterdir()}
