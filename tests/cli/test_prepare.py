from __future__ import annotations

import json

from formers.cli.main import main


def test_prepare_char_tinyshakespeare(tmp_path, capsys, tinyshakespeare_txt):
    out = tmp_path / "char"
    code = main(["prepare", str(tinyshakespeare_txt), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "train: 1,003,854 tokens" in printed and "val:   111,540 tokens" in printed
    assert json.loads((out / "meta.json").read_text())["vocab_size"] == 65


def test_prepare_gpt2_dir(tmp_path, capsys, gpt2_bpe_dir):
    text = tmp_path / "t.txt"
    text.write_text("Hello world<|endoftext|>" * 50)
    code = main(["prepare", str(text), "--out", str(tmp_path / "g"), "--tokenizer", "gpt2",
                 "--gpt2-dir", str(gpt2_bpe_dir), "--val-fraction", "0.2"])
    printed = capsys.readouterr().out
    meta = json.loads((tmp_path / "g" / "meta.json").read_text())
    assert code == 0 and meta["tokenizer"] == "gpt2" and meta["train_tokens"] + meta["val_tokens"] == 150
    assert f"train: {meta['train_tokens']} tokens" in printed


def test_prepare_errors_are_one_line(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("some text " * 10)
    assert main(["prepare", str(text), "--out", str(tmp_path / "o"), "--tokenizer", "nope"]) == 2
    assert "formers prepare: error: tokenizer must be one of ('char', 'gpt2')" in capsys.readouterr().err
    assert main(["prepare", str(text), "--out", str(tmp_path / "o"), "--tokenizer", "gpt2",
                 "--gpt2-dir", str(tmp_path)]) == 2
    assert "lacks the gpt2-bpe files" in capsys.readouterr().err
