from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

import formers
from formers.cli.main import main

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
    assert code == 0 and "quickstart" in out and "multi30k-en-de" in out and "expected:" in out


def test_train_writes_a_complete_run(trained_run):
    ckpts = trained_run / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_00000012"
    assert sorted(p.name for p in ckpts.glob("step_*")) == ["step_00000004", "step_00000008", "step_00000012"]
    for name in ("tokenizer.json", "config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"):
        assert (ckpts / "step_00000012" / name).is_file(), name
    assert (ckpts / "best" / "model.safetensors").is_file()
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


def test_average_command(trained_run, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "average", str(trained_run), "--last", "2", "--out", str(tmp_path / "avg"))
    assert code == 0 and "averaged 2 checkpoints" in out
    assert formers.from_pretrained(tmp_path / "avg").config.embed_dim == 32


def test_resume_continues_and_existing_run_needs_resume(trained_run, capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "quickstart", "--run-dir", str(trained_run), *SMALL)
    assert code == 2 and "--resume" in err
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    code, _, err = run_cli(capsys, "train", "quickstart", "--run-dir", str(copy), "--resume", *SMALL,
                           "--set", "train.max_steps=16")
    assert code == 0, err
    assert (copy / "checkpoints" / "latest").read_text().strip() == "step_00000016"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "no-such-recipe"], "unknown recipe 'no-such-recipe'; built-in recipes: "),
        (["train", "quickstart", "--set", "train.max_stepz=3"], "unknown config key(s) train.max_stepz"),
        (["train", "quickstart", "--set", "data.vocab=3"], "unknown config key(s) data.vocab"),
        (["train", "quickstart", "--set", "model.num_layerz=3"], "unknown config key(s) num_layerz"),
        (["train", "quickstart", "--set", "train.max_steps"], "--set expects key=value"),
        (["train", "quickstart", "--set", "train..x=1"], "malformed key"),
        (["train", "quickstart", "--set", "train.max_steps=many"], "train.max_steps': expected int | None, got 'many'"),
        (["train", "missing.yaml"], "recipe file 'missing.yaml' does not exist"),
        (["translate", "--checkpoint", "/nonexistent/dir", "hi"], "does not exist"),
    ],
)
def test_bad_input_gives_one_clear_line(capsys, argv, message):
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
    import shutil

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
