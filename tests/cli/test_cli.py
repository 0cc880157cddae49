from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import torch

import formers
from formers.cli.main import main
from formers.files import load_safetensors

SMALL = [
    "--set", "train.max_minutes=null", "--set", "train.max_steps=12", "--set", "train.save_every=4",
    "--set", "train.keep_last=3", "--set", "train.progress_bar=false", "--set", "data.max_train_pairs=400",
    "--set", "data.max_valid_pairs=6", "--set", "data.vocab_size=600", "--set", "task_options.final_beam_size=2",
    "--set", "task_options.average_last=3", "--set", "model.embed_dim=32", "--set", "model.ffn_dim=64",
    "--set", "train.eval_every=6", "--set", "train.best_metric=val_nll", "--set", "train.best_mode=min",
    "--set", "train.log_every=4",
]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny quickstart run trained once for the tests of this module."""
    run_dir = tmp_path_factory.mktemp("run") / "qs"
    assert main(["train", "quickstart", "--run-dir", str(run_dir), *SMALL]) == 0
    return run_dir


def test_list_models_and_recipes(capsys):
    code, out, _ = run_cli(capsys, "list-models", "transformer_*")
    assert code == 0 and "transformer_base" in out and "Table 3" in out
    code, out, _ = run_cli(capsys, "recipes")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["RECIPE", "TASK", "MODEL", "DATA", "METRIC", "EXPECTED", "HARDWARE", "TIME"]
    from formers.recipes.recipe import list_recipes

    recipes = list_recipes()
    assert {line.split()[0] for line in lines[1:] if line and not line.startswith(" ")} >= set(recipes)
    for bad in ("see README", "None", "{", "TBD", "QUICKSTART"):
        assert bad not in out, bad
    for name, r in recipes.items():  # every recipe states what it reaches, where and how fast
        assert all(getattr(r.expected, f) for f in ("metric", "value", "hardware", "time", "notes")), name
    code, out, _ = run_cli(capsys, "recipes", "bert-finetune-spam-cpu")
    assert code == 0 and "all-MiniLM-L6-v2 (pretrained), dropout=0.1" in out and "formers train bert-finetune" in out
    assert "spam_baseline.py" in out  # the notes
    code, _, err = run_cli(capsys, "recipes", "nope")
    assert code == 2 and "unknown recipe 'nope'" in err and "quickstart" in err


def test_version(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith("formers ")
    try:
        assert out.split()[1] == importlib.metadata.version("formers")
    except importlib.metadata.PackageNotFoundError:
        assert out.split()[1] == formers.__version__ and "(not installed)" in out


def test_train_writes_a_complete_run(trained_run):
    ckpts = trained_run / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_00000012"
    # every 4 steps, and step 6 whose evaluation was a new best; keep_last=3 pruned step 4
    assert sorted(p.name for p in ckpts.glob("step_*")) == ["step_00000006", "step_00000008", "step_00000012"]
    for name in ("tokenizer.json", "config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"):
        assert (ckpts / "step_00000012" / name).is_file(), name
    assert os.readlink(ckpts / "best") in ("step_00000006", "step_00000012")  # a link to a step checkpoint
    assert formers.from_pretrained(ckpts / "best").config.embed_dim == 32
    assert (trained_run / "averaged" / "tokenizer.json").is_file()
    results = json.loads((trained_run / "results.json").read_text())
    assert results["steps"] == 12 and {"bleu_final", "bleu_best", "bleu_averaged_last_3"} <= set(results)
    assert (trained_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "val_nll" in (trained_run / "metrics.csv").read_text()
    model = formers.from_pretrained(trained_run)
    assert model.config.norm_first and model.config.embed_dim == 32


def test_translate_from_arguments_file_and_stdin(trained_run, capsys, tmp_path, monkeypatch):
    code, out, _ = run_cli(capsys, "translate", "--checkpoint", str(trained_run), "--beam", "1", "And God said.", "Amen.")
    assert code == 0 and len(out.splitlines()) == 2
    f = tmp_path / "in.txt"
    f.write_text("And God said.\nAmen.\nIn the beginning.\n")
    code, out_file, _ = run_cli(capsys, "translate", "--checkpoint", str(trained_run), "--beam", "1", "--file", str(f))
    assert code == 0 and out_file.splitlines()[:2] == out.splitlines() and len(out_file.splitlines()) == 3
    monkeypatch.setattr(sys, "stdin", io.StringIO("And God said.\n"))
    code, out_stdin, _ = run_cli(capsys, "translate", "--checkpoint", str(trained_run / "averaged"), "--beam", "2")
    assert code == 0 and len(out_stdin.splitlines()) == 1


def test_evaluate_on_corpus_and_files(trained_run, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "evaluate", "--checkpoint", str(trained_run), "--corpus", "bible-en-es",
                           "--split", "test", "--limit", "5", "--beam", "1")
    assert code == 0 and "sacreBLEU" in out and "on 5 sentences" in out
    (tmp_path / "s.txt").write_text("Amen.\n")
    (tmp_path / "r.txt").write_text("Amén.\n")
    code, out, _ = run_cli(capsys, "evaluate", "--checkpoint", str(trained_run), "--src", str(tmp_path / "s.txt"),
                           "--ref", str(tmp_path / "r.txt"), "--output", str(tmp_path / "h.txt"))
    assert code == 0 and (tmp_path / "h.txt").read_text().count("\n") == 1


def test_a_run_with_one_checkpoint_skips_averaging_and_still_reports(capsys, tmp_path):
    """A time budget that ends before the second save: the final report says so and the run succeeds."""
    run_dir = tmp_path / "short"
    code, out, err = run_cli(capsys, "train", "quickstart", "--run-dir", str(run_dir), *SMALL,
                             "--set", "train.max_steps=3", "--set", "train.eval_every=0", "--set", "train.save_every=0")
    assert code == 0, err
    assert "averaging skipped: the run holds 1 step checkpoint(s)" in out and "task_options.average_last=3" in out
    results = json.loads((run_dir / "results.json").read_text())
    assert "bleu_final" in results and not any(k.startswith("bleu_averaged") for k in results)
    assert not (run_dir / "averaged").exists()


def test_average_command(trained_run, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "average", str(trained_run), "--last", "2", "--out", str(tmp_path / "avg"))
    assert code == 0 and "averaged 2 checkpoints" in out
    assert formers.from_pretrained(tmp_path / "avg").config.embed_dim == 32


def test_resume_continues_and_existing_run_needs_resume(trained_run, capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "quickstart", "--run-dir", str(trained_run), *SMALL)
    assert code == 2 and "--resume" in err
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    code, _, err = run_cli(capsys, "train", "quickstart", "--run-dir", str(copy), "--resume", *SMALL,
                           "--set", "train.max_steps=16")
    assert code == 0, err
    assert (copy / "checkpoints" / "latest").read_text().strip() == "step_00000016"


def test_resume_without_a_checkpoint_is_refused_and_writes_nothing(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for run_dir in (tmp_path / "typo", empty):
        code, _, err = run_cli(capsys, "train", "quickstart", "--run-dir", str(run_dir), "--resume", *SMALL)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert f"cannot resume: run directory {run_dir} holds no checkpoint" in err
    assert not (tmp_path / "typo").exists() and not any(empty.iterdir())


def test_a_refused_or_failed_resume_leaves_the_run_as_it_was(trained_run, capsys, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    recipe = (copy / "recipe.yaml").read_bytes()
    # keys that decide what is trained cannot change: each is named with its old and new value
    code, _, err = run_cli(capsys, "train", "quickstart", "--run-dir", str(copy), "--resume", *SMALL,
                           "--set", "model.embed_dim=64", "--set", "data.vocab_size=500", "--set", "train.seed=3")
    assert code == 2 and len(err.strip().splitlines()) == 1
    for change in ("model.embed_dim: 32 -> 64", "data.vocab_size: 600 -> 500", "train.seed: 0 -> 3"):
        assert change in err
    # a checkpoint that fails to load: the resume stops before recording its new settings
    weights = copy / "checkpoints" / "step_00000012" / "optimizer.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run_cli(capsys, "train", "quickstart", "--run-dir", str(copy), "--resume", *SMALL,
                           "--set", "train.max_steps=16")
    assert code == 2 and "optimizer.safetensors" in err
    assert (copy / "recipe.yaml").read_bytes() == recipe


def test_ctrl_c_saves_a_checkpoint_and_prints_the_resume_command(trained_run, capsys, tmp_path, monkeypatch):
    from formers.training.trainer import Trainer

    real, calls = Trainer._forward_backward, [0]

    def ctrl_c_at_step_7(self, batch, window):
        calls[0] += 1
        if calls[0] == 7:
            raise KeyboardInterrupt
        return real(self, batch, window)

    monkeypatch.setattr(Trainer, "_forward_backward", ctrl_c_at_step_7)
    run_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "quickstart", "--run-dir", str(run_dir), *SMALL)
    assert code == 130 and "interrupted after step 6; saved" in err
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_00000006"
    command = [line for line in err.splitlines() if line.startswith("resume with: ")]
    argv = shlex.split(command[0].removeprefix("resume with: "))
    assert argv[:3] == ["formers", "train", "quickstart"] and argv[-3:] == ["--run-dir", str(run_dir), "--resume"]
    monkeypatch.undo()
    code, _, err = run_cli(capsys, *argv[1:])
    assert code == 0, err
    # the interrupted and resumed run ends with the very weights of the uninterrupted one
    final = "checkpoints/step_00000012/model.safetensors"
    expected, got = load_safetensors(trained_run / final), load_safetensors(run_dir / final)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "no-such-recipe"], "unknown recipe 'no-such-recipe'; built-in recipes: "),
        (["train", "quickstart", "--set", "train.max_stepz=3"], "unknown config key(s) train.max_stepz"),
        (["train", "quickstart", "--set", "data.vocab=3"], "unknown config key(s) data.vocab"),
        (["train", "quickstart", "--set", "model.num_layerz=3"], "unknown config key(s) model.num_layerz"),
        (["train", "quickstart", "--set", "train.max_steps"], "--set expects key=value"),
        (["train", "quickstart", "--set", "train..x=1"], "malformed key"),
        (["train", "quickstart", "--set", "train.max_steps=many"], "train.max_steps': expected int | None, got 'many'"),
        (["train", "missing.yaml"], "recipe file 'missing.yaml' does not exist"),
        (["translate", "--checkpoint", "/nonexistent/dir", "hi"], "does not exist"),
    ],
)
def test_bad_input_gives_one_clear_line(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/<recipe> is relative: never the user's folder (which may hold runs/quickstart)
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err
    if argv[1] == "no-such-recipe":  # the error lists every built-in recipe
        from formers.recipes.recipe import list_recipes

        assert all(name in err for name in list_recipes())


def test_translate_rejects_empty_and_too_long_sources(trained_run, capsys):
    code, _, err = run_cli(capsys, "translate", "--checkpoint", str(trained_run), "   ")
    assert code == 2 and "source sentence 0 is empty" in err
    long = " ".join(["begat"] * 400)
    code, _, err = run_cli(capsys, "translate", "--checkpoint", str(trained_run), long)
    assert code == 2 and "beyond the model's max_seq_len=256" in err


def test_corrupt_and_truncated_checkpoints(trained_run, capsys, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(trained_run / "checkpoints" / "step_00000012", bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    code, _, err = run_cli(capsys, "translate", "--checkpoint", str(bad), "Amen.")
    assert code == 2 and "corrupt or truncated safetensors file" in err and "model.safetensors" in err
    (bad / "config.json").write_text("{not json")
    code, _, err = run_cli(capsys, "translate", "--checkpoint", str(bad), "Amen.")
    assert code == 2 and "corrupt JSON" in err and "config.json" in err
    with pytest.raises(ValueError, match="corrupt JSON"):
        formers.from_pretrained(bad)
