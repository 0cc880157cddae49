"""``formers translate``/``evaluate`` input handling on a tiny random checkpoint: files and stdin read as UTF-8
with the bad line named, blank lines kept aligned, empty arguments refused, bad option values refused in one line."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch

import formers
from formers.cli.main import main
from formers.data.tokenizers import SubwordTokenizer

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "el gato se sento", "un perro corrio en el parque"] * 4


def make_translation_checkpoint(directory: Path) -> Path:
    """A random 1+1-layer Transformer (max_seq_len 24) saved with a joint BPE trained on ``CORPUS``."""
    tok = SubwordTokenizer.train(CORPUS, vocab_size=60, min_frequency=1)
    torch.manual_seed(0)
    model = formers.create_model(
        "transformer_tiny", embed_dim=16, num_heads=2, ffn_dim=32, num_encoder_layers=1, num_decoder_layers=1,
        src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, max_seq_len=24,
    )
    formers.save_pretrained(model, directory)
    tok.save(directory / "tokenizer.json")
    return directory


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_translation_checkpoint(tmp_path_factory.mktemp("translate") / "ckpt")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_blank_lines_of_a_file_translate_to_blank_lines(checkpoint, tmp_path, capsys):
    (tmp_path / "src.txt").write_text("the cat\n\nthe dog\n   \r\na cat\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "translate", "--checkpoint", str(checkpoint), "--file", str(tmp_path / "src.txt"))
    assert code == 0, err
    lines = out.split("\n")[:-1]
    assert len(lines) == 5 and lines[1] == "" and lines[3] == ""
    _, alone, _ = run_cli(capsys, "translate", "--checkpoint", str(checkpoint), "the cat", "the dog", "a cat")
    assert [lines[0], lines[2], lines[4]] == alone.split("\n")[:-1]  # the blank lines changed nothing else
    assert "2 blank line(s)" in one_line(err) and "(line 2, 4)" in err


def test_blank_lines_on_stdin_are_kept_and_an_empty_argument_is_refused(checkpoint, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\nthe cat\n"))
    code, out, err = run_cli(capsys, "translate", "--checkpoint", str(checkpoint))
    assert code == 0 and out.startswith("\n") and out.count("\n") == 2 and "of stdin" in err
    code, out, err = run_cli(capsys, "translate", "--checkpoint", str(checkpoint), "the cat", "")
    assert code == 2 and "source sentence 1 is empty" in one_line(err) and out == ""


def _bytes_stdin(data: bytes) -> io.TextIOWrapper:
    """stdin as a terminal gives it: bytes underneath, decoded by the locale (surrogates for undecodable bytes)."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")


@pytest.mark.parametrize("stdin", [_bytes_stdin, lambda data: io.StringIO(data.decode("utf-8", "surrogateescape"))])
def test_non_utf8_stdin_is_refused_naming_the_line(checkpoint, capsys, monkeypatch, stdin):
    monkeypatch.setattr(sys, "stdin", stdin(b"the cat\nle caf\xe9 noir\n"))
    code, out, err = run_cli(capsys, "translate", "--checkpoint", str(checkpoint))
    assert code == 2 and out == ""
    assert "stdin line 2 is not valid UTF-8" in one_line(err) and "0xe9" in err


def test_non_utf8_files_and_arguments_are_refused_naming_the_line(checkpoint, tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes(b"the cat\r\nthe dog\r\nle caf\xe9\r\n")
    code, _, err = run_cli(capsys, "translate", "--checkpoint", str(checkpoint), "--file", str(tmp_path / "latin1.txt"))
    assert code == 2 and "latin1.txt' line 3 is not valid UTF-8 (byte 0xe9 at column 7)" in one_line(err)
    argument = b"caf\xe9".decode("utf-8", "surrogateescape")  # how Python passes a non-UTF-8 argv
    code, _, err = run_cli(capsys, "translate", "--checkpoint", str(checkpoint), "the cat", argument)
    assert code == 2 and "sentence argument 2 is not valid UTF-8 text" in one_line(err)
    (tmp_path / "bom.txt").write_bytes("\ufeffthe cat\n".encode())
    code, out, err = run_cli(capsys, "translate", "--checkpoint", str(checkpoint), "--file", str(tmp_path / "bom.txt"))
    _, plain, _ = run_cli(capsys, "translate", "--checkpoint", str(checkpoint), "the cat")
    assert code == 0 and out == plain  # a byte-order mark is not part of the first sentence


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("--alpha", "nan", "--alpha must be >= 0 (a finite number), got nan"),
        ("--alpha", "inf", "--alpha must be >= 0 (a finite number), got inf"),
        ("--alpha", "-1", "--alpha must be >= 0 (a finite number), got -1.0"),
        ("--beam", "0", "--beam must be an int >= 1, got 0"),
        ("--beam", "1.5", "argument --beam: invalid int value: '1.5'"),
        ("--beam", "1000", "--beam must be an int in [1, "),
    ],
)
def test_bad_decoding_options_give_one_line(checkpoint, capsys, option, value, match):
    code, out, err = run_cli(capsys, "translate", "--checkpoint", str(checkpoint), "the cat", option, value)
    assert code == 2 and match in one_line(err) and out == ""


def test_evaluate_keeps_blank_sources_aligned_and_checks_its_files(checkpoint, tmp_path, capsys):
    (tmp_path / "src.txt").write_text("the cat\n\nthe dog\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("el gato\n\nel perro\n", encoding="utf-8")
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--src", str(tmp_path / "src.txt"), "--ref"]
    code, out, err = run_cli(capsys, *argv, str(tmp_path / "ref.txt"), "--output", str(tmp_path / "hyp.txt"))
    assert code == 0 and "on 3 sentences" in out, err
    assert (tmp_path / "hyp.txt").read_text(encoding="utf-8").split("\n")[1] == ""
    (tmp_path / "bad.txt").write_bytes(b"el gato\n\xff\nel perro\n")
    code, _, err = run_cli(capsys, *argv, str(tmp_path / "bad.txt"))
    assert code == 2 and "--ref" in one_line(err) and "line 2 is not valid UTF-8" in err
    code, _, err = run_cli(capsys, *argv, str(tmp_path / "ref.txt"), "--limit", "0")
    assert code == 2 and "--limit must be an int >= 1, got 0" in one_line(err)


def test_a_bad_corpus_split_or_language_names_the_options(checkpoint, capsys):
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--corpus", "bible-en-es"]
    code, _, err = run_cli(capsys, *argv, "--split", "nope")
    assert code == 2 and "--corpus bible-en-es --split nope" in one_line(err) and "got 'nope'" in err
    code, _, err = run_cli(capsys, *argv, "--src-lang", "de", "--tgt-lang", "fr")
    assert code == 2 and "languages de -> fr (--src-lang / --tgt-lang" in one_line(err)


def test_fast_and_eager_decoding_print_the_same_translations(checkpoint, capsys):
    texts = ["the cat sat", "a dog ran in the park", "el gato"]
    for beam in ("1", "3"):
        _, fast, _ = run_cli(capsys, "translate", "--checkpoint", str(checkpoint), "--beam", beam, "--fast", *texts)
        code, eager, err = run_cli(capsys, "translate", "--checkpoint", str(checkpoint), "--beam", beam, "--no-fast",
                                   *texts)
        assert code == 0, err
        assert fast == eager and len(eager.split("\n")) == 4
