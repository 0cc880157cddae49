"""`formers train --nproc-per-node N`: the torchrun command it starts and its refusals (the runs themselves are in
tests/training/test_distributed.py)."""

from __future__ import annotations

import json

import pytest

from formers.cli.main import main
from formers.recipes.launch import LaunchFailed, torchrun_args


def test_the_torchrun_command_runs_formers_train_on_this_machine():
    assert torchrun_args(4, ["quickstart", "--resume"]) == [
        "--standalone", "--nnodes", "1", "--nproc-per-node", "4", "-m", "formers.cli.main", "train", "quickstart",
        "--resume"]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="nproc_per_node \\(--nproc-per-node\\) must be an int >= 1"):
            torchrun_args(bad, [])
    assert str(LaunchFailed(1, -9)).startswith("rank 1 of the distributed run failed (exit code -9)")


def test_a_bad_process_count_is_one_line_and_exit_code_2(tmp_path, capsys):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"name": "r", "task": "causal_lm", "model": {"name": "gpt_mini"},
                                  "data": {"text": "t.txt"}}))
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run"), "--nproc-per-node", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--nproc-per-node" in err[0] and "must be an int >= 1, got 0" in err[0]
    assert not (tmp_path / "run").exists()
