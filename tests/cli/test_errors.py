"""Every CLI failure is one line on stderr, exit code 2, no traceback: hostile files, a full or read-only disk, a
checkpoint of the wrong family, malformed YAML, and exceptions nobody planned for."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import formers
from formers.cli import main as cli_main
from formers.cli.main import main
from formers.recipes.recipe import load_recipe
from formers.registry import create_model


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code: int, err: str, *parts: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("formers ") and "Traceback" not in err, err
    for part in parts:
        assert part in err, (part, err)


@pytest.fixture
def no_hang():
    def alarm(signum, frame):
        raise TimeoutError("the command blocked")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory) -> Path:
    """A tiny GPT checkpoint with a character tokenizer."""
    from formers.data.tokenizers.char import CharTokenizer

    directory = tmp_path_factory.mktemp("gpt") / "gpt"
    model = create_model("gpt_mini", vocab_size=12, embed_dim=16, num_layers=1, num_heads=2, max_seq_len=16, eos_id=None)
    formers.save_pretrained(model, directory)
    CharTokenizer("abcdefghij").save(directory / "tokenizer.json")
    return directory


def test_translate_and_evaluate_refuse_a_gpt_checkpoint_by_its_family(gpt_dir, capsys, tmp_path):
    code, _, err = run_cli(capsys, "translate", "--checkpoint", str(gpt_dir), "Hello.")
    one_line(code, err, "holds a gpt model; translate needs an encoder-decoder ('transformer' or 'rnn')")
    (tmp_path / "src.txt").write_text("a\n")
    code, _, err = run_cli(capsys, "evaluate", "--checkpoint", str(gpt_dir), "--src", str(tmp_path / "src.txt"),
                           "--ref", str(tmp_path / "src.txt"))
    one_line(code, err, "holds a gpt model; evaluate needs an encoder-decoder ('transformer' or 'rnn')")


@pytest.mark.parametrize(
    "pointer, message",
    [(b"x" * 5000, "5,000 bytes, more than the 256"), (b"\x00\x9c\xff\xfe", "binary data"),
     (b"../../gpt", "one directory name")],
)
def test_a_hostile_latest_pointer_is_one_line(gpt_dir, capsys, tmp_path, pointer, message):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "latest").write_bytes(pointer)
    for command in (["generate", "--checkpoint", str(tmp_path / "run"), "--prompt", "ab"],
                    ["translate", "--checkpoint", str(tmp_path / "run"), "Hello."]):
        code, _, err = run_cli(capsys, *command)
        one_line(code, err, "checkpoints/latest", message)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_fifo_in_place_of_a_checkpoint_file_is_one_line_and_never_blocks(gpt_dir, capsys, tmp_path, no_hang, name):
    import shutil

    directory = tmp_path / "ckpt"
    shutil.copytree(gpt_dir, directory)
    (directory / name).unlink()
    os.mkfifo(directory / name)
    code, _, err = run_cli(capsys, "generate", "--checkpoint", str(directory), "--prompt", "ab")
    one_line(code, err, name)


def test_a_non_utf8_tokenizer_is_one_line(gpt_dir, capsys, tmp_path):
    import shutil

    directory = tmp_path / "ckpt"
    shutil.copytree(gpt_dir, directory)
    (directory / "tokenizer.json").write_bytes(b"\xff\xfe\x00{bad")
    code, _, err = run_cli(capsys, "generate", "--checkpoint", str(directory), "--prompt", "ab")
    one_line(code, err, "tokenizer.json")


def test_a_non_utf8_tokenizer_of_a_translation_checkpoint_is_one_line(capsys, tmp_path):
    model = create_model("transformer_tiny", src_vocab_size=12, tgt_vocab_size=12, embed_dim=16, num_heads=2,
                         ffn_dim=16, num_encoder_layers=1, num_decoder_layers=1)
    formers.save_pretrained(model, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "tokenizer.json").write_bytes(b"\xff\xfe\x00{bad")
    code, _, err = run_cli(capsys, "translate", "--checkpoint", str(tmp_path / "ckpt"), "Hello.")
    one_line(code, err)


@pytest.mark.parametrize(
    "content, message",
    [(b"task: translation\nmodel: [1, 2\n", "bad.yaml is not valid YAML at line 3, column 1"),
     (b"a: 1\n  b: 2\n", "bad.yaml is not valid YAML at line 2"),
     (b"\xff\xfe", "bad.yaml is not UTF-8"),
     (b"- 1\n", "must hold a mapping")],
)
def test_a_malformed_yaml_recipe_is_one_line(capsys, tmp_path, content, message):
    (tmp_path / "bad.yaml").write_bytes(content)
    code, _, err = run_cli(capsys, "train", str(tmp_path / "bad.yaml"), "--run-dir", str(tmp_path / "run"))
    one_line(code, err, message)
    assert not (tmp_path / "run").exists()


def test_a_yaml_alias_bomb_is_one_line(capsys, tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10**9 values expanded
    (tmp_path / "bomb.yaml").write_text("name: bomb\ndata:\n" + "".join(f"  {line}\n" for line in lines))
    code, _, err = run_cli(capsys, "train", str(tmp_path / "bomb.yaml"), "--run-dir", str(tmp_path / "run"))
    one_line(code, err, "bomb.yaml expands to more than 1,000,000 values")


def test_a_malformed_set_value_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "quickstart", "--run-dir", str(tmp_path / "run"),
                           "--set", "model.num_layers=[1,")
    one_line(code, err, "--set 'model.num_layers=[1,' is not valid YAML")


@pytest.mark.parametrize(
    "error, parts",
    [
        (OSError(errno.EROFS, os.strerror(errno.EROFS)), ["Read-only file system", "averaged"]),
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), ["No space left on device", "averaged"]),
        (PermissionError(errno.EACCES, os.strerror(errno.EACCES)), ["Permission denied", "averaged"]),
    ],
)
def test_a_failed_save_is_one_line_naming_the_path_and_keeps_the_earlier_output(
    gpt_dir, capsys, tmp_path, monkeypatch, error, parts
):
    run = _two_checkpoint_run(gpt_dir, tmp_path)
    assert run_cli(capsys, "average", str(run), "--last", "2")[0] == 0
    before = (run / "averaged" / "model.safetensors").read_bytes()
    import formers.training.checkpoint as ckpt

    def failing_save(*args, **kwargs):
        raise error

    monkeypatch.setattr(ckpt, "save_file", failing_save)
    code, _, err = run_cli(capsys, "average", str(run), "--last", "2")
    one_line(code, err, *parts)
    assert (run / "averaged" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["averaged", "checkpoints"]  # no temporary directory left


def _two_checkpoint_run(gpt_dir: Path, tmp_path: Path) -> Path:
    import shutil

    run = tmp_path / "run"
    for step in (1, 2):
        shutil.copytree(gpt_dir, run / "checkpoints" / f"step_0000000{step}")
    return run


def test_a_really_full_disk_during_average_is_one_line(gpt_dir, tmp_path):
    """A real write failure in a real process: RLIMIT_FSIZE makes writes past 4 KiB fail, like a full disk."""
    run = _two_checkpoint_run(gpt_dir, tmp_path)
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from formers.cli.main import main
        assert main(["average", {str(run)!r}, "--last", "2"]) == 0
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        sys.exit(main(["average", {str(run)!r}, "--last", "2"]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(formers.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    env.pop("FORMERS_DEBUG", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False)
    one_line(out.returncode, out.stderr, "File too large", str(run / "averaged"))
    assert formers.from_pretrained(run / "averaged").config.embed_dim == 16  # the first average is intact


def test_an_unplanned_exception_is_one_line_with_its_type(capsys, monkeypatch):
    def broken(args):
        raise KeyError("surprise")

    parser = cli_main.build_parser()
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["list-models"].set_defaults(func=broken)
    code, _, err = run_cli(capsys, "list-models")
    one_line(code, err, "KeyError: 'surprise'")
    monkeypatch.setenv("FORMERS_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["list-models"])


def test_python_dash_m_formers_is_the_command_with_its_exit_codes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(formers.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    env.pop("FORMERS_DEBUG", None)
    run = lambda *a: subprocess.run([sys.executable, "-m", "formers", *a], capture_output=True, text=True,  # noqa: E731
                                    env=env, cwd=tmp_path, timeout=300, check=False)
    listed = run("list-models")
    assert listed.returncode == 0 and "gpt2" in listed.stdout
    bad = run("train", "no-such-recipe")
    one_line(bad.returncode, bad.stderr, "no-such-recipe")


# Errors a newcomer's walkthrough of the README met (2026-12-08).


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
