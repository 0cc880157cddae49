from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from formers.data.lm import (
    LMWindowLoader,
    TokenFile,
    lm_eval_batches,
    prepare_corpus,
    token_dtype,
)
from formers.data.tokenizers.char import CharTokenizer
from formers.data.tokenizers.joint_bpe import SubwordTokenizer
from formers.data.tokenizers.load import load_tokenizer
from formers.data.tokenizers.wordpiece import WordPieceTokenizer

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 20


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_prepare_char_memmap_round_trip(tmp_path, text_file):
    out = tmp_path / "prepared"
    meta = prepare_corpus(text_file, out, tokenizer="char")
    split = int(len(TEXT) * 0.9)
    assert meta["tokenizer"] == "char" and meta["dtype"] == "uint16"
    assert (meta["train_tokens"], meta["val_tokens"]) == (split, len(TEXT) - split)
    assert json.loads((out / "meta.json").read_text()) == meta
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary folder left
    tok = load_tokenizer(out / "tokenizer.json")
    assert isinstance(tok, CharTokenizer) and tok.vocab_size == meta["vocab_size"] == len(set(TEXT))
    train, val = TokenFile(out / "train.bin"), TokenFile(out / "val.bin")
    assert isinstance(train.tokens, np.memmap) and train.dtype == np.uint16 and len(train) == split
    assert tok.decode(train[:]) + tok.decode(val[:]) == TEXT
    # preparing again replaces the folder atomically
    meta2 = prepare_corpus(text_file, out, tokenizer=out / "tokenizer.json", val_fraction=0.5)
    assert meta2["val_chars"] == len(TEXT) - int(len(TEXT) * 0.5) and meta2["tokenizer"] == "char"


def test_prepare_tinyshakespeare_gpt2(tmp_path, tinyshakespeare_txt, gpt2_bpe_dir):
    meta = prepare_corpus(tinyshakespeare_txt, tmp_path / "ts", tokenizer="gpt2",
                          gpt2_files_dir=gpt2_bpe_dir)
    assert (meta["train_tokens"], meta["val_tokens"]) == (301_966, 36_059)
    assert meta["vocab_size"] == 50257 and meta["dtype"] == "uint16" and meta["eot_id"] == 50256
    assert meta["sha256"] == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    train = TokenFile(tmp_path / "ts" / "train.bin")
    assert len(train) == 301_966 and list(train[:4]) == [5962, 22307, 25, 198]  # "First Citizen:\n"


def test_prepare_with_a_saved_tokenizer_directory(tmp_path, text_file):
    """Any tokenizer load_tokenizer reads whose ids are a plain stream: here a joint BPE; not BERT's framed WordPiece."""
    joint = SubwordTokenizer.train(TEXT.splitlines(), vocab_size=80, min_frequency=1)
    joint.save(tmp_path / "joint" / "tokenizer.json")
    meta = prepare_corpus(text_file, tmp_path / "out", tokenizer=tmp_path / "joint")
    assert meta["tokenizer"] == "bpe" and meta["vocab_size"] == joint.vocab_size and "eot_id" not in meta
    split = int(len(TEXT) * 0.9)
    assert TokenFile(tmp_path / "out" / "train.bin")[:].tolist() == joint.encode(TEXT[:split])
    WordPieceTokenizer.train(TEXT.splitlines(), vocab_size=60, min_frequency=1).save(tmp_path / "bert")
    with pytest.raises(ValueError, match="needs a character or BPE tokenizer, got a WordPieceTokenizer"):
        prepare_corpus(text_file, tmp_path / "out2", tokenizer=tmp_path / "bert")


def test_prepare_errors(tmp_path, text_file):
    with pytest.raises(ValueError, match=r"tokenizer must be one of \('char', 'gpt2'\).*got 'bpe32'"):
        prepare_corpus(text_file, tmp_path / "o", tokenizer="bpe32")
    with pytest.raises(ValueError, match=r"val_fraction must be a number in \(0, 1\), got 1.5"):
        prepare_corpus(text_file, tmp_path / "o", val_fraction=1.5)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        prepare_corpus(empty, tmp_path / "o")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("a")
    with pytest.raises(ValueError, match="the train split .* has no tokens"):
        prepare_corpus(tiny, tmp_path / "o")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("precious")
    with pytest.raises(ValueError, match="refusing to replace"):
        prepare_corpus(text_file, busy)
    assert (busy / "keep.txt").read_text() == "precious"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_corpus(tmp_path / "missing.txt", tmp_path / "o")


def test_token_dtype():
    assert token_dtype(65) == np.uint16 and token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


def test_token_file_uint32(tmp_path):
    arr = np.array([0, 70_000, 5], dtype=np.uint32)
    arr.tofile(tmp_path / "x.bin")
    assert TokenFile(tmp_path / "x.bin", dtype="uint32")[:].tolist() == [0, 70_000, 5]
    with pytest.raises(FileNotFoundError, match="meta.json"):
        TokenFile(tmp_path / "x.bin")
    (tmp_path / "odd.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="whole number of uint16 elements, got 3 bytes"):
        TokenFile(tmp_path / "odd.bin", dtype="uint16")


TOKENS = np.arange(1000, dtype=np.uint16)  # token value == position, so windows are easy to check


def test_loader_windows_aligned():
    loader = LMWindowLoader(TOKENS, block_size=16, batch_size=4, seed=0, steps_per_epoch=5)
    batches = list(loader)
    assert len(loader) == len(batches) == 5
    for b in batches:
        x, y = b["input_ids"], b["labels"]
        assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.long
        assert torch.equal(y, x + 1)  # labels are the inputs shifted by one token
        assert torch.equal(x, x[:, :1] + torch.arange(16))  # contiguous windows
        assert int(x.min()) >= 0 and int(y.max()) <= 999


def test_loader_deterministic_per_seed_and_epoch():
    def run(seed: int, epoch: int) -> list[torch.Tensor]:
        loader = LMWindowLoader(TOKENS, block_size=8, batch_size=3, seed=seed, steps_per_epoch=6)
        loader.set_epoch(epoch)
        return [b["input_ids"] for b in loader]

    same = [torch.equal(a, b) for a, b in zip(run(0, 1), run(0, 1))]
    assert all(same)
    assert not all(torch.equal(a, b) for a, b in zip(run(0, 1), run(0, 2)))
    assert not all(torch.equal(a, b) for a, b in zip(run(0, 1), run(1, 1)))
    # resuming by set_epoch + skipping gives the same remaining batches
    loader = LMWindowLoader(TOKENS, block_size=8, batch_size=3, seed=0, steps_per_epoch=6)
    loader.set_epoch(1)
    it = iter(loader)
    for _ in range(4):
        next(it)
    assert all(torch.equal(a["input_ids"], b) for a, b in zip(it, run(0, 1)[4:]))


def test_loader_covers_every_start():
    loader = LMWindowLoader(np.arange(12, dtype=np.int64), block_size=4, batch_size=64, seed=3, steps_per_epoch=4)
    starts = loader.starts()
    assert starts.shape == (4, 64) and set(starts.ravel().tolist()) == set(range(8))  # last start = N - T - 1


def test_loader_reads_memmap(tmp_path, text_file):
    prepare_corpus(text_file, tmp_path / "p")
    train = TokenFile(tmp_path / "p" / "train.bin")
    batch = next(iter(LMWindowLoader(train, block_size=32, batch_size=2, seed=0, steps_per_epoch=1)))
    assert batch["input_ids"].shape == (2, 32)


def test_eval_batches_fixed_and_spread():
    ev = lm_eval_batches(TOKENS, block_size=10, batch_size=4, max_batches=3)
    assert len(ev) == 3 and ev.num_windows == 12
    first, second = list(ev), list(ev)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, second))
    starts = ev.starts
    assert starts[0] == 0 and starts[-1] == 1000 - 10 - 1 and np.all(np.diff(starts) >= 10)
    for b in first:
        assert torch.equal(b["labels"], b["input_ids"] + 1)
    full = lm_eval_batches(TOKENS, block_size=10, batch_size=7)
    assert full.num_windows == 99 and len(full) == 15 and list(full)[-1]["input_ids"].shape == (1, 10)
    one = lm_eval_batches(np.arange(11), block_size=10, batch_size=4)
    assert one.num_windows == 1 and list(one)[0]["labels"][0, -1] == 10


def test_loader_errors():
    with pytest.raises(ValueError, match="block_size must be an int >= 1, got 0"):
        LMWindowLoader(TOKENS, block_size=0, batch_size=2)
    with pytest.raises(ValueError, match=r"at least block_size \+ 1 = 1001 tokens for one window, got 1000"):
        LMWindowLoader(TOKENS, block_size=1000, batch_size=2)
    with pytest.raises(ValueError, match="empty"):
        lm_eval_batches(np.array([], dtype=np.uint16), block_size=4, batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        LMWindowLoader(TOKENS, block_size=4, batch_size=0)
    with pytest.raises(ValueError, match=r"tokens must be 1-D, got shape \(10, 100\)"):
        LMWindowLoader(TOKENS.reshape(10, 100), block_size=4, batch_size=2)
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        LMWindowLoader(TOKENS, block_size=4, batch_size=2).set_epoch(-1)
    with pytest.raises(TypeError, match="tokens must be a TokenFile"):
        LMWindowLoader([1, 2, 3], block_size=1, batch_size=1)
