"""Tests for formers.data.tokenizers.joint_bpe: exact round trips on real text, fixed special ids, save/load."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from formers.data.corpora import load_bible_en_es
from formers.data.tokenizers.joint_bpe import SubwordTokenizer

MULTI30K = Path(__file__).resolve().parents[4] / "shared" / "data" / "multi30k"


@pytest.fixture(scope="module")
def bible_tokenizer() -> tuple[SubwordTokenizer, list[str]]:
    text = load_bible_en_es("valid")
    sentences = text.src + text.tgt
    return SubwordTokenizer.train(sentences, vocab_size=2000), sentences


def test_bible_round_trip_and_special_ids(bible_tokenizer: tuple[SubwordTokenizer, list[str]]) -> None:
    tok, sentences = bible_tokenizer
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert tok.vocab_size == 2000
    for sentence in sentences:
        ids = tok.encode(sentence)
        assert min(ids) > 3, "encode must not add special ids"
        assert tok.decode(ids) == sentence
    assert tok.encode_batch(sentences[:5]) == [tok.encode(s) for s in sentences[:5]]


def test_decode_skips_special_ids(bible_tokenizer: tuple[SubwordTokenizer, list[str]]) -> None:
    tok, sentences = bible_tokenizer
    ids = tok.encode(sentences[0])
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id, tok.pad_id]) == sentences[0]
    with pytest.raises(ValueError, match="outside the vocabulary range"):
        tok.decode([tok.vocab_size])


@pytest.mark.skipif(
    not MULTI30K.is_dir(),
    reason=f"no Multi30k copy at {MULTI30K} (research-use licence: not shipped); put train/val.{{en,de}}.gz from "
    "https://github.com/multi30k/dataset/raw/master/data/task1/raw/ there",
)
def test_multi30k_round_trip() -> None:
    def lines(name: str) -> list[str]:
        with gzip.open(MULTI30K / name, "rt", encoding="utf-8") as f:
            return f.read().splitlines()

    german = lines("train.de.gz")
    nbsp = [s for s in german if "\xa0" in s]
    train = lines("train.en.gz")[:5000] + german[:5000] + nbsp
    tok = SubwordTokenizer.train(train, vocab_size=4000)
    for sentence in train + lines("val.en.gz")[:200]:
        if all(tok.token_to_id(ch) is not None or ch == " " for ch in sentence):
            assert tok.decode(tok.encode(sentence)) == sentence
    # Non-breaking spaces occur in the German data; without a normaliser they survive the round trip.
    nbsp = [s for s in train if "\xa0" in s]
    assert nbsp and all(tok.decode(tok.encode(s)) == s for s in nbsp)


def test_save_load_equal(tmp_path: Path, bible_tokenizer: tuple[SubwordTokenizer, list[str]]) -> None:
    tok, sentences = bible_tokenizer
    file = tok.save(tmp_path)
    assert file.name == "tokenizer.json"
    for loaded in (SubwordTokenizer.load(file), SubwordTokenizer.from_file(tmp_path)):
        assert loaded == tok
        assert loaded.encode(sentences[3]) == tok.encode(sentences[3])


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty corpus"):
        SubwordTokenizer.train(["", "   "], vocab_size=100)
    with pytest.raises(ValueError, match="vocab_size must be an int >= 5.*got 4"):
        SubwordTokenizer.train(["hello world"], vocab_size=4)
    with pytest.raises(TypeError, match="single str"):
        SubwordTokenizer.train("hello world", vocab_size=100)
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        SubwordTokenizer.load(tmp_path / "missing.json")


_BPE_IN_A_SUBPROCESS = """
import sys
from formers.data.corpora import read_bible_en_es
from formers.data.tokenizers.gpt2_bpe import train_byte_level_bpe
from formers.data.tokenizers.joint_bpe import SubwordTokenizer
rows = read_bible_en_es()[::4]
joint = SubwordTokenizer.train([r[1] for r in rows] + [r[2] for r in rows], vocab_size=2000)
byte_level = train_byte_level_bpe([r[1] for r in rows], vocab_size=1000)
sys.stdout.write(joint._tok.to_str() + "\\n" + byte_level._tok.to_str())
"""


def test_bpe_training_is_reproducible_across_processes():
    """Two fresh processes (different hash seeds) train the same joint BPE and byte-level BPE, ids included."""
    import os
    import subprocess
    import sys

    outputs = [
        subprocess.run([sys.executable, "-c", _BPE_IN_A_SUBPROCESS], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2")
    ]
    assert len(outputs[0]) > 10_000 and outputs[0] == outputs[1]
