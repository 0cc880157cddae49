"""``formers serve``: arguments, the app it builds and hands to uvicorn (localhost by default), and one-line errors."""

from __future__ import annotations

import pytest
import torch

import formers
from formers.cli.main import main
from formers.data.tokenizers.char import CharTokenizer

pytest.importorskip("fastapi", reason="pip install 'formers[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="pip install 'formers[serve]'")


@pytest.fixture
def gpt_dir(tmp_path):
    tok = CharTokenizer.from_corpus("to be or not to be")
    torch.manual_seed(0)
    model = formers.create_model("gpt_mini", vocab_size=tok.vocab_size, eos_id=None, embed_dim=16, num_heads=2,
                                 num_layers=1, max_seq_len=32)
    formers.save_pretrained(model, tmp_path / "tiny gpt")
    tok.save(tmp_path / "tiny gpt" / "tokenizer.json")
    return tmp_path / "tiny gpt"


@pytest.fixture
def served(monkeypatch):
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    return calls


def test_serve_loads_each_checkpoint_and_binds_localhost_by_default(gpt_dir, served, capsys):
    assert main(["serve", "--checkpoint", str(gpt_dir), "--checkpoint", str(gpt_dir), "--device", "cpu",
                 "--max-new-tokens", "9"]) == 0
    (app, kwargs), = served
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8000
    assert [(m.id, m.task) for m in app.state.models.values()] == [("tiny-gpt", "generate"), ("tiny-gpt-2", "generate")]
    assert app.state.limits.max_new_tokens == 9
    assert "tiny-gpt (generate)" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(gpt_dir), "--host", "0.0.0.0", "--port", "9001", "--device", "cpu"]) == 0
    assert served[1][1]["host"] == "0.0.0.0" and served[1][1]["port"] == 9001


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "--port must be"),
    (["--max-new-tokens", "0"], "max_new_tokens must be an int >= 1"),
    (["--max-upload-mb", "0"], "--max-upload-mb must be in (0, 1024]"),
])
def test_bad_options_give_one_line(gpt_dir, served, capsys, argv, message):
    assert main(["serve", "--checkpoint", str(gpt_dir), "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not served


def test_checkpoints_the_playground_cannot_serve_are_refused(tmp_path, served, capsys):
    assert main(["serve", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    formers.save_pretrained(formers.create_model("word2vec_skipgram", vocab_size=10, embed_dim=4), tmp_path / "w2v")
    assert main(["serve", "--checkpoint", str(tmp_path / "w2v"), "--device", "cpu"]) == 2
    assert "got a 'word2vec' model" in capsys.readouterr().err
    assert not served


def test_without_the_serve_extra_the_command_says_what_to_install(gpt_dir, served, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    for name in [m for m in sys.modules if m.startswith("formers.serve")]:
        monkeypatch.delitem(sys.modules, name)
    assert main(["serve", "--checkpoint", str(gpt_dir), "--device", "cpu"]) == 2
    assert "pip install 'formers[serve]'" in capsys.readouterr().err and not served
