from __future__ import annotations

import pytest

from formers.data.tokenizers.char import CharTokenizer


def test_from_corpus_sorted_round_trip():
    tok = CharTokenizer.from_corpus("hello world")
    assert tok.chars == sorted(set("hello world"))
    assert tok.vocab_size == 8
    ids = tok.encode("low hold")
    assert ids == [tok.chars.index(c) for c in "low hold"]
    assert tok.decode(ids) == "low hold"
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_tinyshakespeare_has_65_characters(tinyshakespeare_txt):
    text = tinyshakespeare_txt.read_text(encoding="utf-8")
    tok = CharTokenizer.from_corpus(text)
    assert tok.vocab_size == 65
    assert tok.decode(tok.encode(text[:5000])) == text[:5000]
    assert tok.encode_array(text).shape == (len(text),)


def test_save_load(tmp_path):
    tok = CharTokenizer.from_corpus("ünï\ncodé 😀\t")
    path = tok.save(tmp_path / "chars.json")
    loaded = CharTokenizer.load(path)
    assert loaded == tok and loaded.encode("😀ü") == tok.encode("😀ü")


def test_errors(tmp_path):
    tok = CharTokenizer.from_corpus("abc")
    with pytest.raises(ValueError, match=r"character 'z' \(U\+007A\) at position 2"):
        tok.encode("abz")
    with pytest.raises(ValueError, match=r"ids\[1\] must be in \[0, 3\), got 3"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_corpus("")
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="single character"):
        CharTokenizer(["ab"])
    (tmp_path / "x.json").write_text('{"model": {}}')
    with pytest.raises(ValueError, match="not a character tokenizer"):
        CharTokenizer.load(tmp_path / "x.json")
