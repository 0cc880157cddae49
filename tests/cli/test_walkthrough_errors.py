"""Errors a newcomer's walkthrough of the README met (2026-12-08): each is one line naming the argument, exit 2."""

from __future__ import annotations

import os
import sys

from formers.cli.main import main
from formers.recipes.recipe import load_recipe


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code: int, err: str, *parts: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("formers ") and "Traceback" not in err, err
    for part in parts:
        assert part in err, (part, err)


def test_a_recipe_file_without_a_name_is_named_after_the_file(tmp_path):
    path = tmp_path / "my-classifier.yaml"
    path.write_text("task: text_classification\ndata: {train_file: a.csv, label_column: label}\n")
    assert load_recipe(str(path)).name == "my-classifier"
    path.write_text("name: spam\ntask: text_classification\n")
    assert load_recipe(str(path)).name == "spam"


def test_a_warmup_longer_than_the_run_names_the_recipe_keys(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "gpt-shakespeare-char-cpu", "--set", "train.max_steps=30",
                           "--set", "train.progress_bar=false", "--run-dir", str(tmp_path / "run"))
    one_line(code, err, "optim.warmup_steps=100", "30 optimizer steps", "train.max_steps")


def test_a_directory_given_as_an_image_says_so_before_the_checkpoint_is_read(capsys, tmp_path):
    (tmp_path / "imgs").mkdir()
    code, _, err = run_cli(capsys, "detect", "--checkpoint", str(tmp_path / "none"), str(tmp_path / "imgs"))
    one_line(code, err, "imgs' is a directory; expected an image file")


def test_draw_must_name_an_image_file_and_is_checked_before_anything_runs(capsys, tmp_path):
    for draw in ("out.txt", "maps"):
        code, out, err = run_cli(capsys, "detect", "--checkpoint", str(tmp_path / "none"), str(tmp_path / "a.png"),
                                 "--draw", str(tmp_path / draw))
        one_line(code, err, "--draw must be an image path ending in one of .png", draw)
        assert out == ""


def test_a_closed_pipe_on_stdout_ends_quietly(capsys, monkeypatch):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away, as `formers list-models | head` leaves it
    stream = os.fdopen(write_end, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", stream)
    code = main(["list-models"])
    monkeypatch.undo()
    assert code == 1
    assert capsys.readouterr().err == ""
    stream.close()


def test_averaging_a_missing_run_says_it_does_not_exist(capsys, tmp_path):
    code, _, err = run_cli(capsys, "average", str(tmp_path / "nonexistent"))
    one_line(code, err, "nonexistent' does not exist")
    assert not (tmp_path / "nonexistent").exists()
